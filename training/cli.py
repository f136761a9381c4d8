"""Turning pipeline errors into one-line messages and exit codes (never a traceback wall)."""

from __future__ import annotations

import sys
from typing import Any, Callable

from training.common import PipelineError


def run_guarded(fn: Callable[[], Any]) -> int:
    """Run `fn`: PipelineError -> 'error: ...' and exit code 2; Ctrl-C/SIGTERM -> exit code 130."""
    try:
        fn()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
