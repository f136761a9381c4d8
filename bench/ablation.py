"""What the asymmetric critic and the observation history buy: PPO fine-tuning from BC with a symmetric or
an asymmetric critic, and with 0 or 3 past observation frames, at the same budget and evaluations.

    python bench/ablation.py                          # 4 variants x 3 seeds at the quick budget (150k steps)
    python bench/ablation.py --budget 1000000         # the same at the reference budget (hours on 2 cores)
    python bench/ablation.py --variants symmetric_h0 asymmetric_h0 --seeds 0
    python bench/ablation.py --collect DIR1 DIR2     # summarize runs made by separate invocations

Variants (`VARIANTS`, pipeline settings on top of the `sample_efficiency_budget_quick` preset):
- `symmetric_h0`: today's default: actor and critic both see the robot's observation;
- `asymmetric_h0`: the critic also sees the privileged simulator state (`env.obs.critic_state`);
- `symmetric_h3` / `asymmetric_h3`: the same with the last 3 observation frames appended (`env.obs.history`).

The history changes the actor's input, so every variant trains its own BC policy (the preset's
demonstrations and epochs, seed 42) and fine-tunes it for each seed. Every run evaluates exactly as
`bench/sample_efficiency.py` does; steps to target use its definition (1.1x the trot with <= 20 % falls).
Writes bench/results/ablation.json (per variant: the selected model's speed and falls on the final
unseen episodes, mean over seeds; steps to target per seed and median; training falls in the first 50k
steps; its BC's speed and falls) and bench/results/ablation.png (evaluated speed against steps).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, speed_curves, worker_pool, write_result
from bench.sample_efficiency import budget_arg, median_steps, pipeline, trot_reference
from training.selection import TARGET_OVER_TROT, shipped_eval, steps_to_target
from training.cli import build_config

PRESET = "sample_efficiency_budget_quick"
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "symmetric_h0": [],
    "asymmetric_h0": [("env.obs.critic_state", "true")],
    "symmetric_h3": [("env.obs.history", "3")],
    "asymmetric_h3": [("env.obs.critic_state", "true"), ("env.obs.history", "3")],
}


def summarize(runs: list[dict], budget: int) -> dict:
    """Mean figures over a variant's runs. Each run: seed, history (evaluations), final (the shipped
    model's final evaluation), train_fall_rate, target."""
    steps = [steps_to_target(r["history"], r["target"]) for r in runs]
    median, is_bound = median_steps(steps, budget)
    falls = [r["train_fall_rate"] for r in runs if r["train_fall_rate"] is not None]
    return {"speed_mps": round(float(np.mean([r["final"]["mean_forward_speed"] for r in runs])), 4),
            "fall_rate": round(float(np.mean([r["final"]["fall_rate"] for r in runs])), 3),
            "steps_to_target": steps, "steps_to_target_median": median, "steps_to_target_median_is_bound": is_bound,
            "train_fall_rate_first_50k": round(float(np.mean(falls)), 3) if falls else None,
            "seeds": [r["seed"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=budget_arg, default="quick",
                    help="'quick' (the preset's 150k steps) or PPO env steps per run")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--workers", type=int, default=2, help="runs executed in parallel (one core each)")
    ap.add_argument("--workdir", type=Path, default=RESULTS / "ablation_runs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any pipeline setting for every run, as `pidog --set`")
    ap.add_argument("--collect", type=Path, nargs="+", metavar="DIR",
                    help="run nothing: summarize the run folders already in these workdirs (e.g. variants run "
                         "by separate invocations side by side)")
    args = ap.parse_args()
    if args.collect and not all(d.is_dir() for d in args.collect):
        ap.exit(2, "error: every --collect DIR must be an existing folder\n")
    if not (1 <= args.workers <= 64 and 1 <= len(args.seeds) <= 100):
        ap.exit(2, "error: --workers must be in 1..64, at most 100 seeds\n")
    typed = [("rl.n_envs", "4"), ("rl.vec_env", "dummy")]
    if args.budget != "quick":
        typed += [("rl.total_timesteps", str(args.budget)), ("rl.checkpoint_freq", str(args.budget))]
    typed += [tuple(a.split("=", 1)) for a in args.set]
    cfg = build_config([], [("@preset", PRESET), *typed])
    for v in args.variants:                                       # validate every run before any work
        build_config([], [("@preset", PRESET), *typed, *VARIANTS[v]])
    t0 = time.perf_counter()
    budget = cfg.rl.total_timesteps
    trot = trot_reference(cfg.env, cfg.rl.eval_episodes * 2)
    target = TARGET_OVER_TROT * trot["mean_forward_speed"]
    print(f"trot {trot['mean_forward_speed']:.3f} m/s; target {target:.3f} m/s", flush=True)
    workdirs = args.collect or [args.workdir]
    if not args.collect:
        run_all(args, typed)
    variants, histories = collect(workdirs, args.variants, args.seeds, target, budget)
    write_result("ablation", {
        "variants": variants, "trot_speed_mps": round(trot["mean_forward_speed"], 4), "target_speed_mps": round(target, 4),
        "budget_steps": budget, "protocol": "quick budget" if args.budget == "quick" else f"{budget} steps",
        "seeds": args.seeds, "eval_episodes": cfg.rl.eval_episodes, "final_eval_episodes": cfg.rl.final_eval_episodes,
        "settings": dict(typed), "run_folders": [str(w) for w in workdirs],
        "wall_seconds": None if args.collect else round(time.perf_counter() - t0, 1)})
    plot(histories, target, RESULTS / "ablation.png")


def run_all(args, typed: list[tuple[str, str]]) -> None:
    """Each variant's BC, then PPO from it for every seed, into `args.workdir` (a failed run is reported)."""
    if args.workdir.exists():
        shutil.rmtree(args.workdir)                               # bench scratch space, regenerated each run
    args.workdir.mkdir(parents=True)
    common = dict(workdir=str(args.workdir), preset=PRESET, typed=typed)
    with worker_pool(args.workers) as pool:
        bc_futures = [pool.submit(pipeline, common, f"bc_{v}", 42, [("rl.total_timesteps", "0"), *VARIANTS[v]])
                      for v in args.variants]
        for f in bc_futures:
            f.result()
        futures = {f"{v}_seed{s}": pool.submit(pipeline, common, f"{v}_seed{s}", s, [
                       ("skip_bc", "true"), ("pretrained_model", str(args.workdir / f"bc_{v}" / "bc_pretrained_policy.pth")),
                       *VARIANTS[v]]) for v in args.variants for s in args.seeds}
        for name, f in futures.items():
            try:
                f.result()
            except Exception as exc:                              # reported; the other runs still count
                print(f"{name} failed: {type(exc).__name__}: {exc}".splitlines()[0], flush=True)


def collect(workdirs: list[Path], names: list[str], seeds: list[int], target: float, budget: int
            ) -> tuple[dict, dict]:
    """Per-variant figures from the run folders (`bc_<variant>`, `<variant>_seed<N>`, in any of
    `workdirs`): their summary.json and evaluations.json."""
    def find(name: str) -> Path | None:
        return next((w / name for w in workdirs if (w / name / "summary.json").is_file()), None)
    # (a run still in progress has no summary.json yet, or one without the stage's figures)

    variants, histories = {}, {}
    for v in names:
        runs, missing = [], {}
        for seed in seeds:
            folder = find(f"{v}_seed{seed}")
            ppo = json.loads((folder / "summary.json").read_text()).get("ppo") if folder else None
            if ppo is None:
                missing[f"{v}_seed{seed}"] = "no PPO summary (the run failed or did not finish)"
                continue
            runs.append({"seed": seed, "target": target,
                         "history": json.loads((folder / "evaluations.json").read_text()),
                         "final": shipped_eval(ppo),
                         "train_fall_rate": ppo["train_fall_rate_first_50k"]})
        bc_folder = find(f"bc_{v}")
        bc = json.loads((bc_folder / "summary.json").read_text())["bc"] if bc_folder else None
        histories[v] = [r["history"] for r in runs]
        variants[v] = {**(summarize(runs, budget) if runs else {}), "settings": dict(VARIANTS[v]),
                       "bc_speed_mps": round(bc["mean_forward_speed"], 4) if bc else None,
                       "bc_fall_rate": round(bc["fall_rate"], 3) if bc else None, "failed": missing}
    return variants, histories


def plot(histories: dict[str, list[list[dict]]], target: float, path: Path) -> None:
    speed_curves(histories, path, "PiDog-v0 fine-tuning from BC: critic x observation history",
                 [(target, f"target 1.1x trot {target:.3f} m/s", "green", ":")])


if __name__ == "__main__":
    import sys

    from training.cli import run_guarded
    sys.exit(run_guarded(main))
