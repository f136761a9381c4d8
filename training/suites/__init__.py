"""Acceptance suites a user runs on their own policy, with the trot as the reference in every row:

    pidog evaluate --suite robustness --model outputs/<exp>/best_model.zip     # outside the training ranges
    pidog evaluate --suite commands --model outputs/<exp>/best_model.zip       # a command-task policy's tracking
    pidog evaluate --suite robustness --gait trot                              # the trot alone

Each suite is a list of independent units (a condition, a command cell) run in a process pool
(`--workers`), and writes `<suite>.json` and `<suite>.png` into the output folder (default: a folder
named after the suite beside the model). Its seeds are its own, disjoint from training (0+), the
pipeline's evaluations (10,000+) and final figures (20,000+); `--seed` moves them.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

from training.common import PipelineError, check_output_dir, versions

TROT = "trot"                # the reference policy's label, and `--gait trot` as a model source


def output_folder(suite: str, model: str | None, out: Path | None, force: bool) -> Path:
    """Where the suite writes, checked before any work: never over earlier results unless `force`."""
    folder = out if out is not None else (Path(model).parent / suite if model else Path("outputs") / "trot" / suite)
    check_output_dir(folder, "--out" if out is not None else "the suite's folder")
    existing = [folder / f"{suite}{ext}" for ext in (".json", ".png") if (folder / f"{suite}{ext}").exists()]
    if existing and not force:
        raise PipelineError(f"{existing[0]} exists: pass --force to replace it, or --out another folder")
    return folder


def run_units(units: dict[str, tuple[Callable, tuple]], workers: int, say: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """name -> fn(*args) for every unit, `workers` at a time (in this process when 1), in `units`' order."""
    if workers == 1 or len(units) == 1:
        return {name: fn(*args) for name, (fn, args) in units.items()}
    from concurrent.futures import as_completed

    from training.workers import worker_pool
    with worker_pool(min(workers, len(units))) as pool:
        futures = {pool.submit(fn, *args): name for name, (fn, args) in units.items()}
        done = {}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            say(f"  {len(done)}/{len(units)} done")
    return {name: done[name] for name in units}


def write_results(folder: Path, suite: str, figures: dict[str, Any]) -> Path:
    """`<folder>/<suite>.json`: the figures, the command that made them, versions and the machine."""
    import os
    import platform
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{suite}.json"
    payload = {**figures, "command": shlex.join(["pidog", *sys.argv[1:]]) if sys.argv[1:] else None,
               "versions": versions(), "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                                    "time": time.strftime("%Y-%m-%dT%H:%M:%S")}}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
