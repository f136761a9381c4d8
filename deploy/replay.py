"""Runtime logs (the .npz files `--log` writes): reading one with every array checked, and replaying it
through the policy offline (`--replay LOG`). Numpy only; `deploy.commands` reads a log's recorded
commands through `read_log` too."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from deploy.policy_spec import PolicySpec
from pidog_env.observation import CMD_VX_SCALE, CMD_WZ_SCALE


def read_log(path: str | Path, widths: dict[str, int | None],
             optional: dict[str, int | None] | None = None) -> dict[str, np.ndarray]:
    """Arrays of a runtime log (the .npz `--log` writes): every name in `widths` (and those of `optional`
    the log has) as a finite numeric (ticks, width) array (width None: any), the same number of ticks in
    each. Anything else is a ValueError naming the file and the problem, in one line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz runtime log (written by --log)")
    optional = optional or {}
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in widths if k not in z.files]
            if missing:
                raise ValueError(f"{path} is not a runtime log of this policy: it has no {', '.join(missing)} array")
            arrays = {k: z[k] for k in [*widths, *(k for k in optional if k in z.files)]}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(f"{path} holds pickled objects; refusing to load it") from None
        raise
    except Exception as exc:  # a damaged archive: zipfile, zlib and OSError
        raise ValueError(f"{path} is not a readable runtime log ({type(exc).__name__})") from None
    ticks: tuple[str, int] | None = None
    for name, a in arrays.items():
        width = {**optional, **widths}[name]
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {name} holds {a.dtype} values, not numbers")
        if a.size == 0:
            a = arrays[name] = a.reshape(0, width or 0)
        if a.ndim != 2 or (width is not None and a.shape[1] != width):
            raise ValueError(f"{path}: {name} has shape {a.shape}; (ticks, {width if width is not None else 'n'}) "
                             "expected (was the log recorded with this policy?)")
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"{path}: {name} holds {int(bad.sum())} non-finite value(s) (NaN or inf), the first "
                             f"at tick {int(np.argwhere(bad)[0][0])}")
        if ticks is None:
            ticks = (name, len(a))
        elif len(a) != ticks[1]:
            raise ValueError(f"{path}: {name} has {len(a)} ticks but {ticks[0]} has {ticks[1]}")
    return arrays


def replay(policy, log_path: Path, spec: PolicySpec | None = None) -> float:
    """Feed a recorded log through the policy offline; max |action difference| against the log. For a
    command-task policy, the commands recorded each tick must also be the ones in its observation."""
    log = read_log(log_path, {"obs": spec.obs_size if spec is not None else None,
                              "action": len(spec.leg_joints) if spec is not None else None}, {"commands": 2})
    obs, actions, commands = log["obs"], log["action"], log.get("commands")
    if spec is not None and spec.command and commands is not None and len(obs):
        lo, _ = spec.frame_layout["command"]
        seen = obs[:, lo:lo + 2] / np.array([CMD_VX_SCALE, CMD_WZ_SCALE])
        if not np.allclose(seen, commands, atol=1e-5):
            raise ValueError(f"{log_path}: the recorded commands are not the ones in the recorded observations")
    out = np.stack([policy(o) for o in obs]) if len(obs) else np.zeros((0, 8))
    return float(np.abs(out - actions).max()) if len(obs) else 0.0
