"""How well a command-task policy follows velocity and turn commands, against the commanded trot.

    pidog evaluate --suite commands --model outputs/<exp>/best_model.zip [--episodes 10]
    pidog evaluate --suite commands --gait trot          # the scripted gait alone (its feasible range)

The grid: forward speed vx in {0, 0.06, 0.12} m/s x yaw rate wz in {-0.4, 0, +0.4} rad/s; per cell
`episodes` randomized episodes with that command held, deterministic actions, episode i on seed
`seed + i`. Per cell: mean measured vx and wz (per step, along the body's heading), their errors against
the command, and the fall rate. `mean_tracking_error` is the mean over cells of
(|vx error| / 0.03 + |wz error| / 0.10) / 2, the selection's tolerances as units (below 1: inside them on
average). The policy passes when every cell is within the tolerances, it drifts at most 0.02 m/s under the
zero command, falls in at most 5 % of the episodes and tracks better than the trot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from training.selection import VX_TOLERANCE, WZ_TOLERANCE
from training.suites import TROT

GRID_VX = (0.0, 0.06, 0.12)
GRID_WZ = (-0.4, 0.0, 0.4)
SEED_BASE = 40_000
DEFAULT_EPISODES = 10
DRIFT_LIMIT = 0.02          # m/s under the zero command
MAX_FALLS = 0.05            # over the grid


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


def cell_error(cell: dict) -> float:
    """A cell's tracking error in units of the tolerances (below 1: inside them on average)."""
    return (cell["vx_error"] / VX_TOLERANCE + cell["wz_error"] / WZ_TOLERANCE) / 2


def within_tolerance(cell: dict) -> bool:
    return cell["vx_error"] <= VX_TOLERANCE and cell["wz_error"] <= WZ_TOLERANCE


def summarize(cells: list[dict]) -> dict[str, Any]:
    """Grid figures (tolerances from training.selection)."""
    zero = next(c for c in cells if c["cmd_vx"] == 0.0 and c["cmd_wz"] == 0.0)
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
        allow_pickle: bool = False) -> dict[str, Any]:
    from training.suites import run_units
    base = config_tree.apply(base, "command.enabled", True)      # a policy's own config has it already
    sources = {TROT: TROT} if source == TROT else {TROT: TROT, "policy": source}
    units = {f"{vx}/{wz}": (run_cell, (vx, wz, sources, base, episodes, seed, allow_pickle))
             for vx in GRID_VX for wz in GRID_WZ}
    cells = run_units(units, workers)
    out: dict[str, Any] = {"suite": "commands", "model": source, "episodes_per_cell": episodes, "seed_base": seed,
                           "episode_seconds": base.episode_seconds, "grid": {"vx": GRID_VX, "wz": GRID_WZ},
                           "tolerances": {"vx": VX_TOLERANCE, "wz": WZ_TOLERANCE}}
    for label in sources:
        out[label] = summarize([cell[label] for cell in cells.values()])
    if "policy" in sources:
        out["verdicts"] = verdicts(out["policy"], out[TROT])
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"{label:<7} mean tracking error {g['mean_tracking_error']:.2f} (in tolerance units), "
             f"{g['cells_within_tolerance']}/{len(g['cells'])} cells within, drift {g['zero_command_drift_mps']:.3f} "
             f"m/s, falls {g['fall_rate']:.0%}" for label in (TROT, "policy") if (g := result.get(label))]
    if "verdicts" in result:
        missed = [k for k, ok in result["verdicts"].items() if not ok]
        lines.append("policy: holds every check" if not missed else "policy misses: " + ", ".join(missed))
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [k for k in (TROT, "policy") if k in result]
    panels = [("vx_error", "|vx error| (m/s)", VX_TOLERANCE), ("wz_error", "|wz error| (rad/s)", WZ_TOLERANCE),
              ("fall_rate", "fall rate", MAX_FALLS)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.3 * len(rows)), squeeze=False)
    for r, name in enumerate(rows):
        cells = result[name]["cells"]
        for c, (key, label, tol) in enumerate(panels):
            grid = np.array([[next(x[key] for x in cells if x["cmd_vx"] == vx and x["cmd_wz"] == wz)
                              for wz in GRID_WZ] for vx in GRID_VX])
            ax = axes[r, c]
            im = ax.imshow(grid, cmap="RdYlGn_r", vmin=0, vmax=2 * tol, origin="lower")
            for i in range(len(GRID_VX)):
                for j in range(len(GRID_WZ)):
                    ax.text(j, i, f"{grid[i, j]:.2f}" if key != "fall_rate" else f"{grid[i, j]:.0%}",
                            ha="center", va="center", fontsize=9)
            ax.set_xticks(range(len(GRID_WZ)), [f"{w:+.1f}" for w in GRID_WZ])
            ax.set_yticks(range(len(GRID_VX)), [f"{v:.2f}" for v in GRID_VX])
            ax.set_xlabel("commanded wz (rad/s)")
            ax.set_ylabel("commanded vx (m/s)")
            ax.set_title(f"{name}: {label}\n(green: within {tol:g})", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
