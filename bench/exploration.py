"""Exploration that does not topple the gait: PPO fine-tuning from the same BC policy with different
exploration noise, compared on the fraction of training episodes that fall in the first steps.

    python bench/exploration.py                   # 5 variants x 2 seeds x 50k steps from the reference BC
    python bench/exploration.py --seeds 0 1 2 --steps 100000
    python bench/exploration.py --bc path/to/bc_pretrained_policy.pth

Variants (`VARIANTS`, each a set of pipeline settings on top of the `sample_efficiency` preset):
- `gaussian`: Gaussian action noise at std 0.08 (ppo.init_log_std -2.5; the default until stop 24);
- `gsde`: generalized state-dependent exploration (policy.use_sde), noise resampled every 4 steps;
- `gaussian_small`: today's default, Gaussian noise at std 0.027 (a third of the above);
- `gaussian_small_entropy`: the same start with an entropy bonus that decays over 200k steps;
- `gaussian_curriculum`: std 0.08 with `rl.curriculum` (the training randomization starts at half).

Without `--bc`, the reference BC policy is trained first exactly as `bench/sample_efficiency.py` trains
it (its preset's demonstrations and epochs). Every run evaluates deterministically as the pipeline does.
Writes bench/results/exploration.json: per variant, `train_fall_rate` (pooled over the
training episodes that ended within the first `--steps`, mean over seeds) and the last evaluation's
speed and fall rate, each seed listed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, worker_pool, write_result
from bench.sample_efficiency import pipeline
from training.callbacks import pooled_fall_rate
from training.cli import build_config

VARIANTS: dict[str, list[tuple[str, str]]] = {
    "gaussian": [("ppo.init_log_std", "-2.5")],                            # std 0.08 (the default until stop 24)
    "gsde": [("policy.use_sde", "true"), ("ppo.sde_sample_freq", "4"), ("ppo.init_log_std", "-4.5")],
    "gaussian_small": [],                                                  # ppo.init_log_std -3.6: std 0.027
    # std 0.027 at first; an entropy bonus that decays to 0 over 200k steps lets it grow where it is safe
    "gaussian_small_entropy": [("ppo.ent_coef", "0.01"),
                               ("ppo.ent_coef_decay_steps", "200000")],
    # not exploration, but the other way to topple less in training: std 0.08 with the randomization
    # curriculum (half the ranges at first, widened after every evaluation with <= 5 % falls)
    "gaussian_curriculum": [("ppo.init_log_std", "-2.5"), ("rl.curriculum", "true")],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=50_000, help="PPO env steps per run")
    ap.add_argument("--bc", type=Path, help="a BC policy (.pth) instead of training the reference one")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=RESULTS / "exploration_runs")
    args = ap.parse_args()
    if not (1_000 <= args.steps <= 10_000_000 and 1 <= args.workers <= 64 and len(args.seeds) <= 100):
        ap.exit(2, "error: --steps must be in 1,000..10,000,000, --workers in 1..64, at most 100 seeds\n")
    if args.bc is not None and not args.bc.is_file():
        ap.exit(2, f"error: {args.bc} not found\n")
    if args.workdir.exists():
        shutil.rmtree(args.workdir)                       # bench scratch space, regenerated each run
    args.workdir.mkdir(parents=True)
    typed = [("rl.n_envs", "4"), ("rl.vec_env", "dummy"), ("rl.total_timesteps", str(args.steps)),
             ("rl.checkpoint_freq", str(args.steps)), ("rl.visualize_freq", "0"), ("rl.final_eval_episodes", "30")]
    build_config([], [("@preset", "sample_efficiency"), *typed])          # validate before any work
    common = dict(workdir=str(args.workdir), preset="sample_efficiency", typed=typed)
    t0 = time.perf_counter()
    bc = args.bc
    if bc is None:
        pipeline(common, "bc", 42, [("rl.total_timesteps", "0")])
        bc = args.workdir / "bc" / "bc_pretrained_policy.pth"
    jobs = [(f"{v}_seed{s}", s, v) for v in args.variants for s in args.seeds]
    with worker_pool(args.workers) as pool:
        futures = {name: pool.submit(pipeline, common, name, seed, [("skip_bc", "true"),
                                                                      ("pretrained_model", str(bc)), *VARIANTS[v]])
                   for name, seed, v in jobs}
        results, failed = {}, {}
        for name, f in futures.items():
            try:
                results[name] = f.result()
            except Exception as exc:                      # reported, and the other runs still count
                failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                print(f"{name} failed: {failed[name]}", flush=True)
    figures: dict[str, dict] = {}
    for v in args.variants:
        runs = []
        for name, seed, variant in jobs:
            if variant != v or name in failed:
                continue
            history = json.loads((args.workdir / name / "training_episodes.json").read_text())
            evals = json.loads((args.workdir / name / "evaluations.json").read_text())
            runs.append({"seed": seed, "train_fall_rate": pooled_fall_rate(history, args.steps),
                         "last_eval_speed_mps": evals[-1]["mean_forward_speed"], "last_eval_fall_rate": evals[-1]["fall_rate"],
                         "final_speed_mps": results[name]["ppo"]["final_eval"]["mean_forward_speed"],
                         "final_fall_rate": results[name]["ppo"]["final_eval"]["fall_rate"]})
        if not runs:
            figures[v] = {"failed": {n: failed[n] for n, _, var in jobs if var == v}}
            continue
        falls = [r["train_fall_rate"] for r in runs if r["train_fall_rate"] is not None]
        figures[v] = {"train_fall_rate": round(float(np.mean(falls)), 3) if falls else None,
                      "final_speed_mps": round(float(np.mean([r["final_speed_mps"] for r in runs])), 4),
                      "final_fall_rate": round(float(np.mean([r["final_fall_rate"] for r in runs])), 3),
                      "settings": dict(VARIANTS[v]), "runs": runs,
                      "failed": {n: failed[n] for n, _, var in jobs if var == v and n in failed}}
    write_result("exploration", {"variants": figures, "steps": args.steps, "seeds": args.seeds, "bc": str(bc),
                                 "wall_seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    import sys

    from training.cli import run_guarded
    sys.exit(run_guarded(main))
