"""Publish chosen bench runs: copy their JSON into docs/results/data/, from which the docs are rendered.

    python -m bench.publish bench/results/runs/trot_20261206-065211_f38430a.json [more.json ...]
    python -m bench.report                       # then re-render docs/results.md and the README's blocks

A run is published as it was written (`bench/_common.write_result`): figures, machine and provenance, no
models. It is refused, with a one-line error and exit 2, when it is not such a record (no `run` block, no
commit, figures that are not finite), when it was measured with uncommitted changes to tracked files
(`--allow-dirty` publishes it anyway; the docs then say so), or when a different file of the same name is
already published. Nothing is written unless every file given passes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bench._common import ROOT, SCHEMA

DATA = ROOT / "docs" / "results" / "data"
MAX_BYTES = 1_000_000                           # a results file, not a model or a log


class PublishError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def _check_finite(value, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise PublishError(f"{where} is not finite")


def read_run(path: Path) -> dict:
    """A bench run as `write_result` wrote it, checked; a PublishError names the file and the problem."""
    if path.suffix != ".json":
        raise PublishError(f"{path}: not a .json results file")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise PublishError(f"{path}: {size:,} bytes; a results file is at most {MAX_BYTES:,}")
        data = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise PublishError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PublishError(f"{path}: not a readable JSON results file ({exc})") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path}: not a bench results record (a JSON object)")
    run, host = data.get("run"), data.get("machine")
    if not isinstance(run, dict) or run.get("schema") != SCHEMA:
        raise PublishError(f"{path}: no `run` block of schema {SCHEMA}; it was written by an older bench "
                           "(rerun the bench to get a self-describing record)")
    for key in ("bench", "commit", "defaults", "versions", "wall_seconds"):
        if not run.get(key):
            raise PublishError(f"{path}: the run record has no {key}")
    if not isinstance(host, dict) or not host.get("cpu_model") or not host.get("time"):
        raise PublishError(f"{path}: no machine record (CPU model and time)")
    _check_finite(data, path.name)
    return data


def published_name(data: dict) -> str:
    """<bench>_<date>-<time>_<commit>.json, the name a run has in docs/results/data/."""
    stamp = data["machine"]["time"].replace(":", "").replace("T", "-").replace("-", "", 2)
    return f"{data['run']['bench']}_{stamp}_{data['run']['commit'][:7]}.json"


def publish(paths: list[Path], allow_dirty: bool = False, data_dir: Path = DATA) -> list[Path]:
    """Check every run first, then copy each into `data_dir`; returns the published paths."""
    planned = []
    for path in paths:
        data = read_run(path)
        if data["run"].get("dirty") and not allow_dirty:
            changed = ", ".join(data["run"].get("dirty_paths", [])[:3])
            raise PublishError(f"{path}: measured with uncommitted changes ({changed}); commit and rerun, or "
                               "pass --allow-dirty")
        target = data_dir / published_name(data)
        text = json.dumps(data, indent=2) + "\n"
        if target.exists() and target.read_text() != text:
            raise PublishError(f"{target} exists with other content; it is never overwritten")
        planned.append((target, text))
    if len({t for t, _ in planned}) != len(planned):
        raise PublishError("two of the files given are the same run")
    data_dir.mkdir(parents=True, exist_ok=True)
    for target, text in planned:
        target.write_text(text)
    return [t for t, _ in planned]


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench.publish", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="bench results files (bench/results/runs/*.json)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="publish a run measured with uncommitted changes (the docs say so beside it)")
    ap.add_argument("--data", type=Path, default=DATA, help="where published runs go (default docs/results/data)")
    args = ap.parse_args(argv)
    try:
        done = publish(args.runs, args.allow_dirty, args.data)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in done:
        print(f"published {path}")
    print("now render the docs: python -m bench.report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
