"""How fast can the scripted gait turn? A random search over the commanded trot's turning-related settings.

    python bench/turning_search.py                   # 40 candidates, ~4 min on one core
    python bench/turning_search.py --candidates 200 --episodes 5

Issue 12's grid asks for +-0.4 rad/s at 0, 0.06 and 0.12 m/s (within 0.10 rad/s and 0.03 m/s). The
default trot turns at about half that. This bench asks whether any setting of the gait family reaches
it: each candidate draws the skid-steer gain (`wz_gain`), duty factor, swing lift, body height, stride
limit and the env's gait period (the gait clock the policy also sees), and runs the commanded trot on
the three +0.4 rad/s cells of the grid (the gait is mirror-symmetric), `--episodes` randomized 20 s
episodes each on the grid's seeds (40,000+). The first candidate is the default trot.

Per candidate: measured vx / wz and falls per cell, the cells within tolerance and the mean error in
tolerance units (as bench/command_tracking.py). Writes bench/results/turning_search.json with the
default and the best candidate, and per cell the fastest turn measured with the forward speed in
tolerance and <= 5 % falls (the frontier a policy imitating this gait family starts from); every
candidate goes to turning_search_candidates.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from bench._common import RESULTS, write_result
from bench.command_tracking import MAX_FALLS, SEED_BASE, cell_error, evaluate_cell, within_tolerance
from pidog_env import config_tree
from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait, TrotParams
from training.selection import VX_TOLERANCE

CELLS = ((0.0, 0.4), (0.06, 0.4), (0.12, 0.4))
# Search ranges: each around the default, wide enough to include what a turning specialist might use.
SPACE = {
    "wz_gain": (2.0, 16.0),        # side stride difference per unit of no-slip difference (log-uniform)
    "duty": (0.5, 0.7),            # fraction of the cycle a foot is on the ground
    "lift": (0.005, 0.014),        # swing height (m); higher lifts overload the 0.2 N m servos
    "body_height": (0.085, 0.100),  # hip height above the stance foot (m)
    "max_stride": (0.05, 0.09),    # |stride| limit per side (m)
    "gait_period": (0.40, 0.80),   # seconds per gait cycle (an env setting: the clock in the observation)
}


def draw(rng: np.random.Generator) -> dict[str, float]:
    c = {k: float(rng.uniform(*v)) for k, v in SPACE.items()}
    c["wz_gain"] = float(np.exp(rng.uniform(*np.log(SPACE["wz_gain"]))))
    return {k: round(v, 4) for k, v in c.items()}


def evaluate(candidate: dict[str, float], episodes: int) -> dict:
    base = config_tree.apply(EnvConfig(), "command.enabled", True)
    base = config_tree.apply(base, "gait_period", candidate["gait_period"])
    params = dataclasses.replace(TrotParams(), **{k: v for k, v in candidate.items() if k != "gait_period"})
    gait = TrotGait.for_config(base, params)
    cells = [evaluate_cell(gait, base, vx, wz, episodes) for vx, wz in CELLS]
    for c in cells:
        c["within"] = within_tolerance(c) and c["fall_rate"] <= MAX_FALLS
    error = float(np.mean([cell_error(c) for c in cells]))
    return {"params": candidate, "cells": cells, "cells_within": sum(c["within"] for c in cells),
            "mean_tracking_error": round(error, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=40, help="settings tried, the default trot first")
    ap.add_argument("--episodes", type=int, default=3, help="randomized 20 s episodes per cell")
    ap.add_argument("--seed", type=int, default=0, help="seed of the search's draws")
    args = ap.parse_args()
    for name, value, hi in (("--candidates", args.candidates, 10_000), ("--episodes", args.episodes, 1_000)):
        if not 1 <= value <= hi:
            ap.exit(2, f"error: {name} must be in 1..{hi}\n")
    if args.seed < 0:
        ap.exit(2, "error: --seed must be >= 0\n")
    rng = np.random.default_rng(args.seed)
    default = TrotParams()
    first = {k: getattr(default, k) for k in SPACE if k != "gait_period"} | {"gait_period": EnvConfig().gait_period}
    t0, results = time.perf_counter(), []
    for i in range(args.candidates):
        r = evaluate(first if i == 0 else draw(rng), args.episodes)
        results.append(r)
        cells = "  ".join(f"{c['cmd_vx']:.2f}: {c['vx']:+.3f} m/s {c['wz']:+.3f} rad/s {c['fall_rate']:.0%}"
                          for c in r["cells"])
        print(f"[{i + 1}/{args.candidates}] {r['cells_within']}/3 within, error {r['mean_tracking_error']:.2f} | "
              f"{cells} | {r['params']}", flush=True)
    best = min(results, key=lambda r: (-r["cells_within"], r["mean_tracking_error"]))
    frontier = {}
    for j, (vx, _) in enumerate(CELLS):
        ok = [r for r in results if r["cells"][j]["vx_error"] <= VX_TOLERANCE
              and r["cells"][j]["fall_rate"] <= MAX_FALLS]
        top = max(ok, key=lambda r: r["cells"][j]["wz"], default=None)
        frontier[f"{vx:.2f}"] = None if top is None else {"wz": top["cells"][j]["wz"], "vx": top["cells"][j]["vx"],
                                                          "params": top["params"]}
    write_result("turning_search", {
        "default": results[0], "best": best, "fastest_turn_with_vx_in_tolerance": frontier,
        "any_candidate_all_cells_within": any(r["cells_within"] == len(CELLS) for r in results),
        "candidates": len(results), "episodes_per_cell": args.episodes, "seed_base": SEED_BASE, "search_seed": args.seed,
        "space": SPACE, "wall_seconds": round(time.perf_counter() - t0, 1)})
    (RESULTS / "turning_search_candidates.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
