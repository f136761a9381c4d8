"""How well a command-task policy follows velocity and turn commands, against the commanded trot.

    pidog evaluate --suite commands --model outputs/<exp>/best_model.zip [--episodes 10]
    pidog evaluate --suite commands --gait trot                   # the scripted gait alone
    pidog evaluate --suite commands --gait trot --rescope         # measure the grid (command_grid.json)

The grid is what the commanded trot (`pidog_env.gaits.TrotGait.for_config`) can do. The candidates are
forward speed vx in `CANDIDATE_VX` x yaw rate wz in `CANDIDATE_WZ`; a candidate cell is in the grid only if
the trot reaches at least half of it in the command's direction (measured vx x sign(cmd vx) >= 0.5 |cmd vx|,
and the same for wz; an axis commanded 0 passes) with falls in at most 5 % of the cell's episodes; the zero
command is always in. `--rescope` runs the trot on every candidate cell and writes the kept cells, with the
trot's figures there (and the dropped ones with the reason), the date, the git commit, the command and the
env config's hash to `command_grid.json` beside this file, the one place the grid is kept; the suite reads
its grid from there and stops with a one-line error if the file is missing, malformed or breaks the rule.

Per cell of the grid: `episodes` randomized episodes with that command held, deterministic actions, episode
i on seed `seed + i` (`--rescope` uses the same seeds: on the same env config the trot's figures there are
the suite's). Per cell: mean measured vx and wz (per step, along the body's heading), their errors against
the command, and the fall rate. `mean_tracking_error` is the mean over the grid's cells of
(|vx error| / 0.03 + |wz error| / 0.10) / 2, the selection's tolerances as units (below 1: inside them on
average). The policy passes when every cell is within the tolerances, it drifts at most 0.02 m/s under the
zero command, falls in at most 5 % of the episodes and tracks better than the trot.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from training.common import PipelineError, checkout_state
from training.selection import VX_TOLERANCE, WZ_TOLERANCE
from training.suites import TROT

CANDIDATE_VX = (0.0, 0.06, 0.09, 0.12)           # m/s
CANDIDATE_WZ = (-0.4, -0.2, 0.0, 0.2, 0.4)       # rad/s
REACH = 0.5                 # share of a commanded axis the trot must reach for the cell to be in the grid
GRID_FILE = Path(__file__).with_name("command_grid.json")
GRID_FORMAT = "pidog-command-grid-v1"
RESCOPE = "pidog evaluate --suite commands --gait trot --rescope"
SEED_BASE = 40_000
DEFAULT_EPISODES = 10
DRIFT_LIMIT = 0.02          # m/s under the zero command
MAX_FALLS = 0.05            # over the grid, and per cell for a cell to be in it


def cell_config(cfg: EnvConfig, vx: float, wz: float) -> EnvConfig:
    """The policy's env with one command held for the whole episode (the range is that one value)."""
    for key, value in (("command.vx_range", (vx, vx)), ("command.wz_range", (wz, wz)), ("command.zero_share", 0.0),
                       ("randomization.enabled", True)):
        cfg = config_tree.apply(cfg, key, value)
    return cfg


def load(source: str, cfg: EnvConfig, allow_pickle: bool = False):
    """`trot` (the commanded gait for `cfg`) or a .zip/.pth command-task policy."""
    if source == TROT:
        from pidog_env.gaits import TrotGait
        return TrotGait.for_config(cfg)
    from training.policies import load_policy
    return load_policy(source, allow_pickle=allow_pickle)[0]


def run_cell(vx: float, wz: float, sources: dict[str, str], base: EnvConfig, episodes: int, seed: int,
             allow_pickle: bool = False) -> dict[str, dict[str, Any]]:
    """One grid cell for every policy (a worker process), all on env config `base` (the policy's)."""
    import torch
    torch.set_num_threads(1)
    from training.evaluation import evaluate_policy
    out = {}
    for label, source in sources.items():
        ev = evaluate_policy(load(source, base, allow_pickle), cell_config(base, vx, wz), episodes, seed=seed)
        out[label] = {"cmd_vx": vx, "cmd_wz": wz, "vx": round(ev["mean_vx"], 4), "wz": round(ev["mean_wz"], 4),
                      "fall_rate": round(ev["fall_rate"], 3),
                      "vx_error": round(abs(ev["mean_vx"] - vx), 4), "wz_error": round(abs(ev["mean_wz"] - wz), 4)}
        print(f"  vx {vx:.2f} wz {wz:+.1f} {label:<7} measured vx {out[label]['vx']:+.3f} wz {out[label]['wz']:+.3f}, "
              f"falls {out[label]['fall_rate']:.0%}", flush=True)
    return out


# ---------------------------------------------------------------- the grid: what the trot reaches
def is_zero(cell: dict) -> bool:
    return cell["cmd_vx"] == 0.0 and cell["cmd_wz"] == 0.0


def shortfalls(cell: dict) -> list[str]:
    """Why the trot's figures in `cell` keep it out of the grid ([]: in it). The zero command is always in."""
    if is_zero(cell):
        return []
    out = []
    for axis, unit in (("vx", "m/s"), ("wz", "rad/s")):
        cmd, got = cell[f"cmd_{axis}"], cell[axis]
        if cmd != 0 and got * math.copysign(1.0, cmd) < REACH * abs(cmd):
            out.append(f"{axis} {got:+.3f} {unit} is under half of {cmd:+.2f}")
    if cell["fall_rate"] > MAX_FALLS:
        out.append(f"falls {cell['fall_rate']:.0%} (at most {MAX_FALLS:.0%})")
    return out


def reached(cell: dict) -> dict[str, float | None]:
    """The share of each commanded axis the trot reached (None where the axis is commanded 0)."""
    return {f"{axis}_reached": round(cell[axis] / cell[f"cmd_{axis}"], 3) if cell[f"cmd_{axis}"] else None
            for axis in ("vx", "wz")}


def rescope(base: EnvConfig, episodes: int, seed: int, workers: int, command: str | None = None) -> dict[str, Any]:
    """The commanded trot on every candidate cell (env config `base`, the command task on): the grid file's
    contents, the kept cells with the trot's figures and the dropped ones with why. `command`: the command
    line that asked for it, as recorded."""
    from training.suites import run_units
    base = config_tree.apply(base, "command.enabled", True)
    units = {f"{vx}/{wz}": (run_cell, (vx, wz, {TROT: TROT}, base, episodes, seed))
             for vx in CANDIDATE_VX for wz in CANDIDATE_WZ}
    kept, dropped = [], []
    for cell in (result[TROT] for result in run_units(units, workers).values()):
        figures = {k: cell[k] for k in ("cmd_vx", "cmd_wz", "vx", "wz", "fall_rate")} | reached(cell)
        why = shortfalls(cell)
        if why:
            dropped.append({**figures, "why": "; ".join(why)})
        else:
            kept.append(figures)
    commit, dirty = checkout_state()
    return {"format": GRID_FORMAT,
            "rule": f"a candidate cell is in the grid when the commanded trot reaches at least {REACH:g} of each "
                    f"commanded axis in its direction with falls in at most {MAX_FALLS:.0%} of the cell's episodes; "
                    "the zero command is always in",
            "candidates": {"vx": list(CANDIDATE_VX), "wz": list(CANDIDATE_WZ)},
            "cells": kept, "dropped": dropped,
            "episodes_per_cell": episodes, "seed_base": seed, "episode_seconds": base.episode_seconds,
            "env_config_hash": base.hash(), "date": time.strftime("%Y-%m-%d"), "commit": commit,
            "dirty_paths": dirty, "command": command}


def write_grid(grid: dict[str, Any], path: Path | None = None) -> Path:
    """The grid file (`GRID_FILE` unless `path`): JSON, one line per cell."""
    def value(v: Any) -> str:
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            return "[\n" + ",\n".join("    " + json.dumps(x) for x in v) + "\n  ]"
        return json.dumps(v)
    path = path or GRID_FILE
    path.write_text("{\n" + ",\n".join(f"  {json.dumps(k)}: {value(v)}" for k, v in grid.items()) + "\n}\n")
    return path


def load_grid(path: Path | None = None) -> dict[str, Any]:
    """The grid file, checked: a one-line PipelineError if it is missing, malformed, measured over other
    candidates than `CANDIDATE_VX` x `CANDIDATE_WZ`, lacks the zero command or holds a cell the rule drops."""
    path = path or GRID_FILE
    if not path.is_file():
        raise PipelineError(f"{path} not found: measure the commands grid with {RESCOPE}")
    try:
        grid = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{path} is not a command grid ({exc}); measure it again with {RESCOPE}") from None
    problem = grid_problem(grid)
    if problem:
        raise PipelineError(f"{path} is not a command grid: {problem}; measure it again with {RESCOPE}")
    return grid


def grid_problem(grid: Any) -> str | None:
    """What is wrong with a grid file's contents, in one line, or None."""
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    if not isinstance(grid, dict) or grid.get("format") != GRID_FORMAT:
        return f"no format {GRID_FORMAT!r}"
    candidates = grid.get("candidates")
    if candidates != {"vx": list(CANDIDATE_VX), "wz": list(CANDIDATE_WZ)}:
        return (f"measured over the candidates {json.dumps(candidates)}, not vx {list(CANDIDATE_VX)} x wz "
                f"{list(CANDIDATE_WZ)}")
    cells = grid.get("cells")
    if not isinstance(cells, list) or not cells:
        return "no cells"
    seen = set()
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or not all(number(cell.get(k)) for k in ("cmd_vx", "cmd_wz", "vx", "wz",
                                                                                   "fall_rate")):
            return f"cell {i} lacks a number among cmd_vx, cmd_wz, vx, wz, fall_rate"
        key = (cell["cmd_vx"], cell["cmd_wz"])
        if cell["cmd_vx"] not in CANDIDATE_VX or cell["cmd_wz"] not in CANDIDATE_WZ:
            return f"cell vx {key[0]:g} wz {key[1]:+g} is not a candidate"
        if key in seen:
            return f"cell vx {key[0]:g} wz {key[1]:+g} appears twice"
        seen.add(key)
        why = shortfalls(cell)
        if why:
            return f"cell vx {key[0]:g} wz {key[1]:+g} is in it but the trot misses it ({'; '.join(why)})"
    if (0.0, 0.0) not in seen:
        return "the zero command is not in it"
    return None


def grid_cells(grid: dict[str, Any]) -> list[tuple[float, float]]:
    """The grid's (vx, wz) commands, in the candidates' order."""
    kept = {(c["cmd_vx"], c["cmd_wz"]) for c in grid["cells"]}
    return [(vx, wz) for vx in CANDIDATE_VX for wz in CANDIDATE_WZ if (vx, wz) in kept]


def rescope_lines(grid: dict[str, Any]) -> list[str]:
    """The kept and dropped cells, one line each, for the terminal."""
    lines = [f"grid: {len(grid['cells'])} of {len(CANDIDATE_VX) * len(CANDIDATE_WZ)} candidate cells (the trot reaches "
             f"at least {REACH:g} of the command, falls <= {MAX_FALLS:.0%})"]
    for cell in sorted(grid["cells"] + grid["dropped"], key=lambda c: (c["cmd_vx"], c["cmd_wz"])):
        lines.append(f"  vx {cell['cmd_vx']:.2f} wz {cell['cmd_wz']:+.1f}: trot vx {cell['vx']:+.3f} wz "
                     f"{cell['wz']:+.3f} falls {cell['fall_rate']:.0%} -> "
                     + (f"dropped ({cell['why']})" if "why" in cell else "kept"))
    return lines


# ---------------------------------------------------------------- the suite on the grid
def cell_error(cell: dict) -> float:
    """A cell's tracking error in units of the tolerances (below 1: inside them on average)."""
    return (cell["vx_error"] / VX_TOLERANCE + cell["wz_error"] / WZ_TOLERANCE) / 2


def within_tolerance(cell: dict) -> bool:
    return cell["vx_error"] <= VX_TOLERANCE and cell["wz_error"] <= WZ_TOLERANCE


def summarize(cells: list[dict]) -> dict[str, Any]:
    """Figures over the grid's cells (tolerances from training.selection)."""
    zero = next(c for c in cells if is_zero(c))
    return {
        "cells": cells,
        "mean_tracking_error": round(float(np.mean([cell_error(c) for c in cells])), 3),
        "mean_vx_error": round(float(np.mean([c["vx_error"] for c in cells])), 4),
        "mean_wz_error": round(float(np.mean([c["wz_error"] for c in cells])), 4),
        "fall_rate": round(float(np.mean([c["fall_rate"] for c in cells])), 3),
        "zero_command_drift_mps": round(abs(zero["vx"]), 4),
        "cells_within_tolerance": sum(within_tolerance(c) for c in cells),
    }


def verdicts(policy: dict[str, Any], trot: dict[str, Any]) -> dict[str, bool]:
    return {"every_cell_within_tolerance": policy["cells_within_tolerance"] == len(policy["cells"]),
            "zero_command_drift_ok": policy["zero_command_drift_mps"] <= DRIFT_LIMIT,
            "falls_ok": policy["fall_rate"] <= MAX_FALLS,
            "better_than_the_trot": policy["mean_tracking_error"] < trot["mean_tracking_error"]}


def run(source: str, base: EnvConfig, episodes: int, seed: int, workers: int,
        allow_pickle: bool = False, grid: dict[str, Any] | None = None) -> dict[str, Any]:
    """The suite on the grid (`grid`: the grid file's contents, read from `GRID_FILE` when None)."""
    from training.suites import run_units
    grid = grid or load_grid()
    base = config_tree.apply(base, "command.enabled", True)      # a policy's own config has it already
    sources = {TROT: TROT} if source == TROT else {TROT: TROT, "policy": source}
    units = {f"{vx}/{wz}": (run_cell, (vx, wz, sources, base, episodes, seed, allow_pickle))
             for vx, wz in grid_cells(grid)}
    cells = run_units(units, workers)
    out: dict[str, Any] = {"suite": "commands", "model": source, "episodes_per_cell": episodes, "seed_base": seed,
                           "episode_seconds": base.episode_seconds,
                           "grid": {"vx": list(CANDIDATE_VX), "wz": list(CANDIDATE_WZ),
                                    "cells": [list(c) for c in grid_cells(grid)],
                                    "measured": {k: grid.get(k) for k in ("date", "commit", "env_config_hash")}},
                           "tolerances": {"vx": VX_TOLERANCE, "wz": WZ_TOLERANCE}}
    for label in sources:
        out[label] = summarize([cell[label] for cell in cells.values()])
    if "policy" in sources:
        out["verdicts"] = verdicts(out["policy"], out[TROT])
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    grid = result.get("grid", {})
    lines = []
    if "cells" in grid:
        lines.append(f"grid: {len(grid['cells'])} of {len(grid['vx']) * len(grid['wz'])} candidate cells (the ones "
                     f"the trot reaches at least half of; {GRID_FILE.name}, measured "
                     f"{grid['measured'].get('date') or 'on an unknown date'})")
    lines += [f"{label:<7} mean tracking error {g['mean_tracking_error']:.2f} (in tolerance units), "
              f"{g['cells_within_tolerance']}/{len(g['cells'])} cells within, drift {g['zero_command_drift_mps']:.3f} "
              f"m/s, falls {g['fall_rate']:.0%}" for label in (TROT, "policy") if (g := result.get(label))]
    if "verdicts" in result:
        missed = [k for k, ok in result["verdicts"].items() if not ok]
        lines.append("policy: holds every check" if not missed else "policy misses: " + ", ".join(missed))
    return lines


def plot_grid(cells: list[dict], key: str, vxs: list[float], wzs: list[float]) -> np.ndarray:
    """`key` per (vx, wz) over the candidate axes; NaN where the cell is not in the grid."""
    at = {(c["cmd_vx"], c["cmd_wz"]): c[key] for c in cells}
    return np.array([[at.get((vx, wz), np.nan) for wz in wzs] for vx in vxs], dtype=float)


def plot(result: dict[str, Any], path: Path) -> None:
    """Per policy: vx error, wz error and fall rate over the candidate cells; grey where not in the grid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [k for k in (TROT, "policy") if k in result]
    vxs, wzs = result["grid"]["vx"], result["grid"]["wz"]
    panels = [("vx_error", "|vx error| (m/s)", VX_TOLERANCE), ("wz_error", "|wz error| (rad/s)", WZ_TOLERANCE),
              ("fall_rate", "fall rate", MAX_FALLS)]
    cmap = matplotlib.colormaps["RdYlGn_r"].with_extremes(bad="lightgrey")
    fig, axes = plt.subplots(len(rows), 3, figsize=(11 + 0.6 * max(0, len(wzs) - 3), 3.3 * len(rows)), squeeze=False)
    for r, name in enumerate(rows):
        for c, (key, label, tol) in enumerate(panels):
            grid = plot_grid(result[name]["cells"], key, vxs, wzs)
            ax = axes[r, c]
            im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=2 * tol, origin="lower")
            for i in range(len(vxs)):
                for j in range(len(wzs)):
                    text = "-" if np.isnan(grid[i, j]) else f"{grid[i, j]:.0%}" if key == "fall_rate" \
                        else f"{grid[i, j]:.2f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=9)
            ax.set_xticks(range(len(wzs)), [f"{w:+.1f}" for w in wzs])
            ax.set_yticks(range(len(vxs)), [f"{v:.2f}" for v in vxs])
            ax.set_xlabel("commanded wz (rad/s)")
            ax.set_ylabel("commanded vx (m/s)")
            ax.set_title(f"{name}: {label}\n(green: within {tol:g}; grey: beyond the trot)", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
