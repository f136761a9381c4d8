"""Checks for the paths a command writes, made before anything is written (standard library only: the
robot runtime uses them too).

Each returns None when the path is fine, else the problem as one line; the caller raises its own
error type with it (the CLI's become `error: ...` and exit code 2).
"""

from __future__ import annotations

import os
from pathlib import Path


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder (or file) above `path` that exists (`path` itself when it exists)."""
    here = Path(os.path.abspath(path))
    while not os.path.lexists(here) and here != here.parent:
        here = here.parent
    return here


def _unwritable(folder: Path) -> bool:
    return not os.access(folder, os.W_OK | os.X_OK)


def output_dir_problem(path: str | Path) -> str | None:
    """A folder that outputs go into (created later, with its parents, when missing): it must not be a
    file or lie under one, and this user must be able to create and write files there."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        return f"{path} exists and is not a folder"
    found = _existing_ancestor(path)
    if not found.is_dir():
        return f"{path} cannot be created: {found} is a file, not a folder"
    if _unwritable(found):
        return (f"{path} is not writable (permission denied)" if found == Path(os.path.abspath(path))
                else f"{path} cannot be created: {found} is not writable (permission denied)")
    return None


def new_file_problem(path: str | Path) -> str | None:
    """A file a command creates: it must not exist yet (earlier results are never replaced), and its folder
    must exist and be writable."""
    path = Path(path)
    if os.path.lexists(path):
        return f"{path} exists; choose another path (earlier results are never replaced)"
    folder = Path(os.path.abspath(path)).parent
    if not folder.exists():
        return f"the folder of {path} does not exist ({folder})"
    if not folder.is_dir():
        return f"{path} cannot be created: {folder} is not a folder"
    if _unwritable(folder):
        return f"{path} cannot be created: {folder} is not writable (permission denied)"
    return None
