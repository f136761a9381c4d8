"""Shared helpers for the benchmark scripts: where results go and how they are written."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

# PIDOG_BENCH_RESULTS redirects the output (the tests use it so they never overwrite real results).
RESULTS = Path(os.environ.get("PIDOG_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_result(name: str, figures: dict) -> Path:
    """Print `figures` and write them (plus machine info) to bench/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {**figures, "machine": machine()}
    path.write_text(json.dumps(payload, indent=2))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(f"-> {path}")
    return path
