"""How well a policy follows velocity and turn commands, against the commanded trot.

    python bench/command_tracking.py                        # trains the command policy first (the one-shot
                                                            # job's default budget with --task command)
    python bench/command_tracking.py --model outputs/<exp>/best_model.zip    # evaluate a given policy
    python bench/command_tracking.py --trot-only            # the scripted gait alone (its feasible range)
    python bench/command_tracking.py --preset tiny --episodes 1   # a smoke test: the same path, trained
                                                            # at the tests' budget (--set KEY=VALUE as well)

The grid: forward speed vx in {0, 0.06, 0.12} m/s x yaw rate wz in {-0.4, 0, +0.4} rad/s; per cell
`--episodes` (10) randomized 20 s episodes with that command held, on seeds from 40,000 (disjoint from
training, selection and the final evaluations), deterministic actions. Per cell: mean measured vx and wz
(per-step, along the body's heading), their errors against the command, and the fall rate.
`mean_tracking_error` is the mean over cells of (|vx error| / 0.03 + |wz error| / 0.10) / 2, the
acceptance tolerances as units (below 1: inside them on average).

Writes bench/results/command_tracking.json ({"trot": {"cells": [...]}, "policy": {"cells": [...]}},
each cell {"cmd_vx", "cmd_wz", "vx", "wz", "fall_rate", ...}) and command_tracking.png (heat maps of
the errors and falls per cell).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, save_figure, write_result
from pidog_env import config_tree
from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait
from training.evaluation import evaluate_policy
from training.selection import VX_TOLERANCE, WZ_TOLERANCE

GRID_VX = (0.0, 0.06, 0.12)
GRID_WZ = (-0.4, 0.0, 0.4)
SEED_BASE = 40_000
DRIFT_LIMIT = 0.02          # m/s under the zero command
MAX_FALLS = 0.05            # over the grid


def cell_config(cfg: EnvConfig, vx: float, wz: float) -> EnvConfig:
    """The policy's env with one command held for the whole episode (the range is that one value)."""
    for key, value in (("command.vx_range", (vx, vx)), ("command.wz_range", (wz, wz)), ("command.zero_share", 0.0),
                       ("randomization.enabled", True)):
        cfg = config_tree.apply(cfg, key, value)
    return cfg


def evaluate_cell(policy, cfg: EnvConfig, vx: float, wz: float, episodes: int) -> dict:
    """One grid cell: the command (vx, wz) held for `episodes` randomized episodes on the grid's seeds."""
    ev = evaluate_policy(policy, cell_config(cfg, vx, wz), episodes, seed=SEED_BASE)
    return {"cmd_vx": vx, "cmd_wz": wz, "vx": round(ev["mean_vx"], 4), "wz": round(ev["mean_wz"], 4),
            "fall_rate": round(ev["fall_rate"], 3),
            "vx_error": round(abs(ev["mean_vx"] - vx), 4), "wz_error": round(abs(ev["mean_wz"] - wz), 4)}


def cell_error(cell: dict) -> float:
    """A cell's tracking error in units of the acceptance tolerances (below 1: inside them on average)."""
    return (cell["vx_error"] / VX_TOLERANCE + cell["wz_error"] / WZ_TOLERANCE) / 2


def within_tolerance(cell: dict) -> bool:
    return cell["vx_error"] <= VX_TOLERANCE and cell["wz_error"] <= WZ_TOLERANCE


def evaluate_grid(policy, cfg: EnvConfig, episodes: int) -> dict:
    cells = []
    for vx in GRID_VX:
        for wz in GRID_WZ:
            cell = evaluate_cell(policy, cfg, vx, wz, episodes)
            cells.append(cell)
            print(f"  vx {vx:.2f} wz {wz:+.1f}: measured vx {cell['vx']:+.3f} wz {cell['wz']:+.3f}, "
                  f"falls {cell['fall_rate']:.0%}", flush=True)
    return summarize(cells)


def summarize(cells: list[dict]) -> dict:
    """Grid figures and the acceptance checks (tolerances from training.selection)."""
    zero = next(c for c in cells if c["cmd_vx"] == 0.0 and c["cmd_wz"] == 0.0)
    score = float(np.mean([cell_error(c) for c in cells]))
    return {
        "cells": cells,
        "mean_tracking_error": round(score, 3),
        "mean_vx_error": round(float(np.mean([c["vx_error"] for c in cells])), 4),
        "mean_wz_error": round(float(np.mean([c["wz_error"] for c in cells])), 4),
        "fall_rate": round(float(np.mean([c["fall_rate"] for c in cells])), 3),
        "zero_command_drift_mps": round(abs(zero["vx"]), 4),
        "cells_within_tolerance": sum(within_tolerance(c) for c in cells),
    }


def training_config(workdir: Path, settings: list[tuple[str, str]] = ()):
    """The one-shot job with --task command (its default budget, then `settings`: presets as ("@preset",
    name) and KEY=VALUE pairs, as `pidog train` takes them); validated."""
    from training.presets import build_config
    return build_config([], [("env.command.enabled", "true"), *settings, ("output_dir", str(workdir.parent)),
                             ("experiment_name", workdir.name), ("live", "false")])


def train_command_policy(workdir: Path, cfg) -> Path:
    """Trains `cfg` (training_config) in `workdir`; its shipped model."""
    from training.pipeline import run
    if workdir.exists():
        shutil.rmtree(workdir)                    # bench scratch space, regenerated each run
    summary = run(cfg)
    selected = summary["ppo"]["selected"]["model"]
    return Path(selected) if selected else workdir / "final_model.zip"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a command-task policy (.zip or .pth) instead of training one")
    ap.add_argument("--trot-only", action="store_true", help="evaluate the commanded trot alone")
    ap.add_argument("--episodes", type=int, default=10, help="episodes per grid cell")
    ap.add_argument("--workdir", type=Path, default=RESULTS / "command_tracking_run")
    ap.add_argument("--preset", action="append", default=[], metavar="NAME",
                    help="a training preset for the policy trained here (e.g. tiny: a smoke test's budget)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training setting for the policy trained here, as `pidog --set` (after the presets)")
    args = ap.parse_args(argv)
    if not 1 <= args.episodes <= 1000:
        ap.exit(2, "error: --episodes must be in 1..1000\n")
    bad = next((a for a in args.set if "=" not in a or not a.split("=", 1)[0]), None)
    if bad is not None:
        ap.exit(2, f"error: --set takes KEY=VALUE, got {bad!r}\n")
    if (args.preset or args.set) and (args.model is not None or args.trot_only):
        ap.exit(2, "error: --preset and --set configure the policy trained here: not with --model or --trot-only\n")
    train_cfg = None
    if args.model is None and not args.trot_only:       # a bad setting fails now, not after the trot's grid
        train_cfg = training_config(args.workdir, [*(("@preset", p) for p in args.preset),
                                                   *(tuple(a.split("=", 1)) for a in args.set)])
    policy = None
    if args.model is not None:
        from training.policies import load_policy
        if not args.model.is_file():
            ap.exit(2, f"error: {args.model} not found\n")
        policy, meta = load_policy(args.model)
        cfg = meta.get("env_config_obj") or EnvConfig()
        if not cfg.command.enabled:
            ap.exit(2, f"error: {args.model} was trained on the forward task; train one with --task command\n")
    t0 = time.perf_counter()
    base = config_tree.apply(EnvConfig(), "command.enabled", True)
    print("commanded trot:", flush=True)
    results: dict = {"trot": evaluate_grid(TrotGait.for_config(base), base, args.episodes)}
    source = "--trot-only"
    if not args.trot_only:
        if policy is None:
            model = train_command_policy(args.workdir, train_cfg)
            from training.policies import load_policy
            policy, meta = load_policy(model)
            cfg, source = meta["env_config_obj"], str(model)
        else:
            source = str(args.model)
        print(f"policy ({source}):", flush=True)
        results["policy"] = evaluate_grid(policy, cfg, args.episodes)
        p, t = results["policy"], results["trot"]
        results["acceptance"] = {
            "every_cell_within_tolerance": p["cells_within_tolerance"] == len(p["cells"]),
            "zero_command_drift_ok": p["zero_command_drift_mps"] <= DRIFT_LIMIT,
            "falls_ok": p["fall_rate"] <= MAX_FALLS,
            "better_than_the_trot": p["mean_tracking_error"] < t["mean_tracking_error"],
        }
    write_result("command_tracking", {**results, "policy_source": source, "episodes_per_cell": args.episodes,
                                      "seed_base": SEED_BASE, "grid": {"vx": GRID_VX, "wz": GRID_WZ},
                                      "training": None if train_cfg is None else
                                          {"presets": args.preset, "settings": dict(a.split("=", 1) for a in args.set),
                                           "total_timesteps": train_cfg.rl.total_timesteps},
                                      "tolerances": {"vx": VX_TOLERANCE, "wz": WZ_TOLERANCE},
                                      "wall_seconds": round(time.perf_counter() - t0, 1)})
    plot(results, RESULTS / "command_tracking.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [k for k in ("trot", "policy") if k in results]
    panels = [("vx_error", "|vx error| (m/s)", VX_TOLERANCE), ("wz_error", "|wz error| (rad/s)", WZ_TOLERANCE),
              ("fall_rate", "fall rate", MAX_FALLS)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.3 * len(rows)), squeeze=False)
    for r, name in enumerate(rows):
        cells = results[name]["cells"]
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
    save_figure(fig, path, dpi=100)


if __name__ == "__main__":
    import sys

    from training.cli import run_guarded
    sys.exit(run_guarded(main))
