"""The identification's files: the robot's command log (deploy/sysid.py writes it) and the tracked angles
(`pidog sysid track` writes them), each checked whole before anything is made from it. Every problem is a
one-line PipelineError naming the file."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from deploy import sysid as recorder
from deploy.sysid import save_npz  # noqa: F401  (the one atomic .npz writer: logs and tracks)
from pidog_env import robot
from training.common import PipelineError


def _load_npz(path: Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{what} {path} not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PipelineError(f"{what} {path} is not an npz file this project wrote ({str(exc).splitlines()[0]})") from None


def _finite(path: Path, name: str, values: np.ndarray) -> None:
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise PipelineError(f"{path}: {name} holds non-finite values (NaN or inf), the first at index {tuple(int(i) for i in bad)}")


def load_log(path: str | Path) -> dict:
    """A command log, checked: every array present, shapes consistent, finite, times increasing."""
    path = Path(path)
    d = _load_npz(path, "the log")
    missing = [k for k in recorder.LOG_KEYS if k not in d]
    if missing:
        raise PipelineError(f"{path} is not a log of python -m deploy.sysid record (no {', '.join(missing)})")
    try:
        meta = json.loads(str(d["meta"]))
    except json.JSONDecodeError:
        raise PipelineError(f"{path}: its meta is not JSON") from None
    if not isinstance(meta, dict) or meta.get("leg") not in robot.LEGS:
        raise PipelineError(f"{path}: meta names no leg of {', '.join(robot.LEGS)}")
    for name in ("t", "command_deg", "flash_t", "battery_t", "battery_v"):
        if d[name].dtype.kind not in "fi":
            raise PipelineError(f"{path}: {name} is not numeric")
        _finite(path, name, d[name])
    n = len(d["t"])
    if d["t"].ndim != 1 or n < 10 or d["command_deg"].shape != (n, robot.N_LEG) or d["segment"].shape != (n,):
        raise PipelineError(f"{path}: t, command_deg and segment disagree in shape ({d['t'].shape}, "
                            f"{d['command_deg'].shape}, {d['segment'].shape}; expected (N,), (N, 8), (N,))")
    if np.any(np.diff(d["t"]) <= 0):
        raise PipelineError(f"{path}: the tick times t do not increase")
    kinds, flashes, seg = d["segment_kind"], d["flash_t"], d["segment"]
    if kinds.ndim != 1 or flashes.shape != kinds.shape or seg.dtype.kind not in "iu":
        raise PipelineError(f"{path}: segment_kind and flash_t must have one entry per segment")
    if seg.min() != 0 or seg.max() != len(kinds) - 1 or np.any(np.diff(seg) < 0):
        raise PipelineError(f"{path}: segment must number the segments 0..{len(kinds) - 1} in order")
    if np.any(np.diff(flashes) <= 0):
        raise PipelineError(f"{path}: the flash times do not increase")
    unknown = sorted(set(kinds.tolist()) - set(recorder.SEGMENT_KINDS))
    if unknown:
        raise PipelineError(f"{path}: unknown segment kind {unknown[0]!r}")
    if d["battery_t"].shape != d["battery_v"].shape:
        raise PipelineError(f"{path}: battery_t and battery_v differ in length")
    d["meta"] = meta
    d["segment_kind"] = [str(k) for k in kinds]
    return d


def leg_commands(log: dict) -> tuple[np.ndarray, np.ndarray]:
    """(tick times, the recorded leg's hip and knee commands in model radians) of a log."""
    i = robot.LEGS.index(log["meta"]["leg"])
    return np.asarray(log["t"]), np.deg2rad(np.asarray(log["command_deg"])[:, 2 * i:2 * i + 2] * robot.LEG_SIGNS[2 * i:2 * i + 2])


TRACK_KEYS = ("t_log", "q", "valid", "t", "q_cmd", "segment", "segment_kind", "flash_t", "battery_v", "meta")


def load_track(path: str | Path) -> dict:
    """Tracked angles (`pidog sysid track`), checked."""
    path = Path(path)
    d = _load_npz(path, "the track")
    missing = [k for k in TRACK_KEYS if k not in d]
    if missing:
        raise PipelineError(f"{path} is not a track file of pidog sysid track (no {', '.join(missing)})")
    meta = json.loads(str(d["meta"]))
    for name in ("t_log", "t", "q_cmd", "flash_t"):
        _finite(path, name, d[name])
    valid = d["valid"].astype(bool)
    _finite(path, "q (tracked frames)", d["q"][valid])
    if d["q"].shape != (len(d["t_log"]), 2) or valid.shape != d["t_log"].shape:
        raise PipelineError(f"{path}: t_log, q and valid disagree in shape")
    if d["q_cmd"].shape != (len(d["t"]), 2) or d["segment"].shape != d["t"].shape:
        raise PipelineError(f"{path}: t, q_cmd and segment disagree in shape")
    if meta.get("leg") not in robot.LEGS:
        raise PipelineError(f"{path}: meta names no leg")
    if valid.sum() < 100:
        raise PipelineError(f"{path}: only {int(valid.sum())} frames were tracked")
    d["meta"], d["valid"] = meta, valid
    d["segment_kind"] = [str(k) for k in d["segment_kind"]]
    return d


