"""The search behind the `scratch` preset: PPO from scratch (no demonstrations) over a grid of initial
std, learning rate, entropy coefficient and discount (reward terms unchanged), 2 seeds each, at a
reduced budget, with the evaluation protocol of bench/sample_efficiency.py.

    python bench/scratch_search.py                    # 8 configurations x 2 seeds x 300k steps (~35 min, 2 cores)
    python bench/scratch_search.py --budget 20000 --seeds 0   # a smoke run

Writes bench/results/scratch_search.json: per configuration and seed, the steps to the target (1.1x the
trot's randomized speed with <= 20 % falls; null if never), the final evaluated speed and fall rate,
and the ranking (most seeds at target, then fewest median steps, then the best speed evaluated with
<= 20 % falls). `--analyze-only` ranks the runs already in --workdir again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, worker_pool, write_result
from bench.sample_efficiency import pipeline, trot_reference
from training.selection import MAX_FALLS_AT_TARGET, TARGET_OVER_TROT, steps_to_target
from training.cli import build_config

# Each configuration: the settings that differ from training.config's defaults (init_log_std -2.5
# is BC-init's; from scratch the policy must explore).
GRID = {
    "std0.37_lr3e-4": {"ppo.init_log_std": -1.0},
    "std0.37_lr1e-4": {"ppo.init_log_std": -1.0, "ppo.learning_rate": 1e-4},
    "std0.37_lr1e-3": {"ppo.init_log_std": -1.0, "ppo.learning_rate": 1e-3},
    "std0.61_lr3e-4": {"ppo.init_log_std": -0.5},
    "std0.22_lr3e-4": {"ppo.init_log_std": -1.5},
    "std0.37_ent0.005": {"ppo.init_log_std": -1.0, "ppo.ent_coef": 0.005},
    "std0.37_gamma0.99": {"ppo.init_log_std": -1.0, "ppo.gamma": 0.99},
    "std0.22_lr1e-4_gamma0.99": {"ppo.init_log_std": -1.5, "ppo.learning_rate": 1e-4, "ppo.gamma": 0.99},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=300_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--configs", nargs="+", choices=sorted(GRID), help="a subset of the grid")
    ap.add_argument("--workdir", type=Path, default=RESULTS / "scratch_search_runs")
    ap.add_argument("--analyze-only", action="store_true", help="rank the runs already in --workdir")
    args = ap.parse_args()
    preset = "sample_efficiency"
    typed = [("rl.total_timesteps", str(args.budget)), ("rl.checkpoint_freq", str(args.budget))]
    cfg = build_config([], [("@preset", preset), *typed])
    if not args.analyze_only:
        if args.workdir.exists():
            shutil.rmtree(args.workdir)             # bench scratch space, regenerated each run
        args.workdir.mkdir(parents=True)
    start = time.perf_counter()
    trot = trot_reference(cfg.env, cfg.rl.eval_episodes * 2)
    target = TARGET_OVER_TROT * trot["mean_forward_speed"]
    print(f"trot {trot['mean_forward_speed']:.3f} m/s; target {target:.3f} m/s", flush=True)
    common = dict(workdir=str(args.workdir), preset=preset, typed=typed)
    names = args.configs or list(GRID)
    jobs = {(name, seed): [("skip_bc", "true")] + [(k, json.dumps(v)) for k, v in GRID[name].items()]
            for name in names for seed in args.seeds}
    if not args.analyze_only:
        with worker_pool(args.workers) as pool:
            futures = [pool.submit(pipeline, common, f"{name}_seed{seed}", seed, extra)
                       for (name, seed), extra in jobs.items()]
            for f in futures:
                f.result()
    finals = {(name, seed): json.loads((args.workdir / f"{name}_seed{seed}" / "summary.json").read_text())
              ["ppo"]["final_eval"] for name, seed in jobs}
    table = {}
    for name in names:
        rows = []
        for seed in args.seeds:
            history = json.loads((args.workdir / f"{name}_seed{seed}" / "evaluations.json").read_text())
            final = finals[(name, seed)]
            rows.append({"seed": seed, "steps_to_target": steps_to_target(history, target),
                         "final_speed_mps": round(final["mean_forward_speed"], 4),
                         "final_fall_rate": round(final["fall_rate"], 3),
                         "best_eval_speed_mps": round(max(h["mean_forward_speed"] for h in history), 4),
                         "best_safe_speed_mps": round(max([h["mean_forward_speed"] for h in history
                                                           if h["fall_rate"] <= MAX_FALLS_AT_TARGET] or [0.0]), 4)})
        reached = [r["steps_to_target"] for r in rows if r["steps_to_target"] is not None]
        table[name] = {"settings": GRID[name], "runs": rows, "seeds_at_target": len(reached),
                       "median_steps_to_target": float(np.median(reached)) if reached else None,
                       "mean_final_speed_mps": round(float(np.mean([r["final_speed_mps"] for r in rows])), 4),
                       "mean_final_fall_rate": round(float(np.mean([r["final_fall_rate"] for r in rows])), 3),
                       "mean_best_safe_speed_mps": round(float(np.mean([r["best_safe_speed_mps"] for r in rows])), 4)}
    # Ranking: most seeds at the target, then fewest median steps to it, then the best evaluated speed
    # with <= 20 % falls (progress towards the target: a fast gait that falls over is not walking).
    ranking = sorted(table, key=lambda n: (-table[n]["seeds_at_target"],
                                           table[n]["median_steps_to_target"] or float("inf"),
                                           -table[n]["mean_best_safe_speed_mps"]))
    for n in ranking:
        t = table[n]
        print(f"{n:<26} at target {t['seeds_at_target']}/{len(args.seeds)}  median steps "
              f"{t['median_steps_to_target']}  best safe speed {t['mean_best_safe_speed_mps']:.3f} m/s  "
              f"final {t['mean_final_speed_mps']:.3f} m/s, falls {t['mean_final_fall_rate']:.0%}")
    write_result("scratch_search", {"analyze_only": args.analyze_only, "trot_speed_mps": round(trot["mean_forward_speed"], 4),
                                    "target_speed_mps": round(target, 4), "budget_steps": args.budget,
                                    "seeds": args.seeds, "configurations": table, "ranking": ranking,
                                    "best": ranking[0], "wall_seconds": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
