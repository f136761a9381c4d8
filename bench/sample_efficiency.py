"""Sample efficiency of BC-initialized PPO against PPO from scratch, through the real pipeline.

    python bench/sample_efficiency.py            # 50 demos x 200 epochs, 1M PPO steps x 3 seeds x 2 (~1.5 h)
    python bench/sample_efficiency.py --budget quick   # ~15 min on 2 cores for iteration (labelled quick)
    python bench/sample_efficiency.py --quick    # a few minutes, same code path, tiny budgets (a smoke test)
    python bench/sample_efficiency.py --skip-scratch   # the BC-initialized runs only (scratch figures null)
    python bench/sample_efficiency.py --algos ppo_handoff sac_rlpd sac_rlpd_interventions sac_scratch \
        --sac-budget 60000                        # off-policy fine-tuning beside the PPO hand-off

Algorithms (`--algos`, default ppo_handoff ppo_scratch): ppo_handoff (PPO from the BC policy, the
pipeline's default), ppo_scratch (PPO from scratch, `scratch` preset), sac_rlpd (SAC from the BC policy
with 50 % of every batch from the demonstrations, critic warm-up, `off_policy.*` settings),
sac_rlpd_interventions (the same with the trot taking over near a fall), sac_scratch (SAC alone).
SAC runs use `--sac-budget` env steps and evaluate every `--sac-eval-freq` steps (same episodes).

Steps:
1. Trot reference: the hard-coded trot over `--eval-episodes` randomized episodes (the same seeds every
   policy is evaluated on) -> trot_speed_mps; target_speed_mps = 1.1 x that.
2. One pipeline run with --total-rl-timesteps 0: demonstrations + BC -> bc_train_seconds, bc_speed_mps,
   bc_fall_rate (randomized episodes).
3. For each seed: the pipeline's PPO from that BC policy (--skip-bc --pretrained-model) and from scratch
   (--skip-bc), same budget, deterministic evaluation every --eval-freq steps.
4. steps_to_target: the first evaluation whose mean forward speed reaches the target with at most 20 %
   falls (a lunge that falls over is not walking); null when never reached within the budget.
   speedup_ratio = median(scratch) / median(BC-init); when scratch never gets there, budget / median(BC-init)
   flagged as a lower bound. Scratch runs use the `scratch` preset (chosen by a search of 8 settings x 2 seeds, CHANGELOG.md),
   BC-init runs the defaults (tuned for the hand-off); both use the same budget and evaluations.
Writes bench/results/sample_efficiency.json and bench/results/sample_efficiency.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


import numpy as np

from bench._common import RESULTS, speed_curves, write_result
from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait
from training.presets import build_config, load_preset
from training.evaluation import evaluate_policy
from training.experiment import Experiment
from training.pipeline import run
from training.selection import TARGET_OVER_TROT, shipped_eval, steps_to_target
from training.workers import worker_pool

HANDOFF_WINDOW = 100_000


def trot_reference(env_cfg: EnvConfig, episodes: int) -> dict:
    return evaluate_policy(TrotGait.for_config(env_cfg), env_cfg, episodes, randomize=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--budget", type=budget_arg, help="'quick' (the ~15 min protocol, preset "
                    "sample_efficiency_budget_quick; figures labelled quick) or PPO env steps per run")
    ap.add_argument("--eval-freq", type=int)
    ap.add_argument("--eval-episodes", type=int, default=None)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--vec-env", choices=["batched", "subproc", "dummy"], default="dummy",
                    help="dummy: each run uses one core, so --workers runs go side by side on 2 cores")
    ap.add_argument("--workers", type=int, default=2, help="PPO runs executed in parallel")
    ap.add_argument("--workdir", type=Path, default=RESULTS / "sample_efficiency_runs")
    ap.add_argument("--scratch-preset", default="scratch",
                    help="the tuned from-scratch PPO setting (training/presets/scratch.json)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any pipeline setting for every run (e.g. ppo.gamma=0.99), as `pidog --set`; it "
                         "overrides an algorithm's own settings (SAC's demo_ratio 0.5) but not the scratch preset")
    ap.add_argument("--skip-scratch", action="store_true",
                    help="run only the BC-initialized PPO (= --algos ppo_handoff)")
    ap.add_argument("--algos", nargs="+", choices=list(ALGOS), default=None,
                    help="algorithms to run (default: ppo_handoff ppo_scratch)")
    ap.add_argument("--sac-budget", type=int, default=100_000, help="env steps per SAC run (default 100,000)")
    ap.add_argument("--sac-eval-freq", type=int, default=5_000, help="env steps between SAC evaluations")
    args = ap.parse_args(argv)
    algos = args.algos or (["ppo_handoff"] if args.skip_scratch else ["ppo_handoff", "ppo_scratch"])
    if args.skip_scratch and args.algos:
        ap.exit(2, "error: --skip-scratch and --algos: give --algos alone\n")
    if not 1_000 <= args.sac_budget <= 10**8 or not 100 <= args.sac_eval_freq <= args.sac_budget:
        ap.exit(2, "error: --sac-budget must be 1,000..10^8 and --sac-eval-freq 100..--sac-budget\n")
    if args.seeds is not None and (len(set(args.seeds)) != len(args.seeds) or not all(0 <= s < 2**31 for s in args.seeds)):
        ap.exit(2, "error: --seeds must be distinct and in 0..2^31-1\n")
    if not 1 <= args.workers <= 64:
        ap.exit(2, "error: --workers must be in 1..64\n")
    bad = next((a for a in args.set if "=" not in a or not a.split("=", 1)[0]), None)
    if bad is not None:
        ap.exit(2, f"error: --set takes KEY=VALUE, got {bad!r}\n")
    q = args.quick
    budget_quick = args.budget == "quick"
    if budget_quick:
        args.budget = None
    preset = "sample_efficiency_quick" if q else "sample_efficiency_budget_quick" if budget_quick else "sample_efficiency"
    seeds = args.seeds or ([0] if q else [0, 1, 2])
    starts = tuple(START_OF[a] for a in ("ppo_handoff", "ppo_scratch") if a in algos)
    typed = [("rl.n_envs", str(args.n_envs)), ("rl.vec_env", args.vec_env)]
    for key, value in (("rl.total_timesteps", args.budget), ("rl.checkpoint_freq", args.budget),
                       ("rl.eval_freq", args.eval_freq), ("rl.eval_episodes", args.eval_episodes)):
        if value is not None:
            typed.append((key, str(value)))
    typed += [tuple(a.split("=", 1)) for a in args.set]
    cfg = build_config([], [("@preset", preset), *typed])    # the protocol's budgets are data (presets)
    budget, eval_freq, eval_eps = cfg.rl.total_timesteps, cfg.rl.eval_freq, cfg.rl.eval_episodes
    n_demos, bc_epochs = cfg.demo.n_episodes, cfg.bc.epochs
    if args.workdir.exists():
        shutil.rmtree(args.workdir)          # bench scratch space, regenerated each run
    args.workdir.mkdir(parents=True)
    t_start = time.perf_counter()

    trot = trot_reference(cfg.env, eval_eps * 2)
    trot_speed = trot["mean_forward_speed"]
    target = TARGET_OVER_TROT * trot_speed
    print(f"trot: {trot_speed:.3f} m/s, falls {trot['fall_rate']:.0%}; target {target:.3f} m/s", flush=True)

    common = dict(workdir=str(args.workdir), preset=preset, typed=typed)
    bc_summary = pipeline(common, "bc", 42, [("rl.total_timesteps", "0")])["bc"]
    bc_path = args.workdir / "bc" / Experiment.BC_POLICY
    jobs = [(f"{kind}_seed{seed}", seed, kind) for seed in seeds for kind in starts]
    sac_jobs = [(f"{algo}_seed{seed}", seed, algo) for seed in seeds for algo in algos if algo.startswith("sac")]
    sac_common = [("rl.total_timesteps", str(args.sac_budget)), ("rl.eval_freq", str(args.sac_eval_freq)),
                  ("rl.checkpoint_freq", str(args.sac_budget))]
    with worker_pool(args.workers) as pool:
        futures = {name: pool.submit(pipeline, common, name, seed, [("skip_bc", "true")] + (
                       [("pretrained_model", str(bc_path))] if kind == "bc_init" else
                       [("@preset", args.scratch_preset)]))
                   for name, seed, kind in jobs}
        futures.update({name: pool.submit(pipeline, common, name, seed, [("skip_bc", "true"), *sac_common,
                        *([("pretrained_model", str(bc_path))] if "rlpd" in algo else [])], ALGOS[algo])
                        for name, seed, algo in sac_jobs})
        results = {name: f.result() for name, f in futures.items()}
    # Each run's folder and evaluation history, read once: {algorithm: [(folder, history) per seed]}.
    runs_of = {algo: [(n, json.loads((args.workdir / n / Experiment.EVALUATIONS).read_text()))
                      for n in (f"{START_OF.get(algo, algo)}_seed{seed}" for seed in seeds)] for algo in algos}
    histories_all = {algo: [h for _, h in runs] for algo, runs in runs_of.items()}
    histories = {START_OF[algo]: histories_all[algo] for algo in algos if algo in START_OF}
    finals: list[dict] = []          # the model each run ships (best_model.zip), else its last model
    lasts: list[dict] = []
    for name, seed, kind in jobs:
        if kind == "bc_init":
            ppo = results[name]["ppo"]
            finals.append(shipped_eval(ppo))
            lasts.append(ppo["final_eval"])

    # BC's return under exactly the protocol of PPO's evaluations (same episodes, same seeds).
    from training.policies import load_policy
    bc_policy, _ = load_policy(bc_path)
    bc_return = evaluate_policy(bc_policy, cfg.env, eval_eps, randomize=True)["mean_return"]
    handoff_runs = histories.get("bc_init", [])           # the PPO hand-off's figures (None without its runs)
    first_ratio = float(np.mean([h[0]["mean_return"] for h in handoff_runs])) / bc_return if handoff_runs else None
    handoff = min(min(e["mean_return"] for e in h if e["timesteps"] <= HANDOFF_WINDOW) / bc_return
                  for h in handoff_runs) if handoff_runs else None
    steps = {k: [steps_to_target(h, target) for h in v] for k, v in histories.items()}
    # Medians over all seeds, a seed that never reached the target counting as "after the budget":
    # where such a seed decides a median, the median (and the ratio) is a bound, flagged as such.
    medians = {k: median_steps(v, budget) for k, v in steps.items()}
    algorithms: dict[str, dict] = {}
    for algo, runs in runs_of.items():
        algorithms[algo] = algorithm_figures([(h, results[n]) for n, h in runs], target, bc_return,
                                             budget if algo in START_OF else args.sac_budget)
    speedup, lower_bound = None, False
    if "bc_init" in medians and medians["bc_init"][0] is not None and not medians["bc_init"][1] and "scratch" in medians:
        scratch_median, lower_bound = medians["scratch"]
        speedup = (scratch_median if scratch_median is not None else budget) / medians["bc_init"][0]
    scratch_finals = [results[name]["ppo"]["final_eval"] for name, _, kind in jobs if kind == "scratch"]

    figures = {
        "algorithms": algorithms,
        "sac_budget_steps": args.sac_budget if any(a.startswith("sac") for a in algos) else None,
        "trot_speed_mps": round(trot_speed, 4),
        "bc_speed_mps": round(bc_summary["mean_forward_speed"], 4),
        "bc_fall_rate": round(bc_summary["fall_rate"], 3),
        "bc_train_seconds": round(bc_summary["train_seconds"], 1),
        "bc_eval_return": round(bc_return, 2),
        "handoff_first_eval_return_ratio": None if first_ratio is None else round(first_ratio, 3),
        "handoff_min_return_ratio": None if handoff is None else round(float(handoff), 3),
        "finetuned_speed_mps": mean_of(finals, "mean_forward_speed", 4),
        "finetuned_fall_rate": mean_of(finals, "fall_rate", 3),
        "finetuned_vs_trot_speed": None if not finals else
            round(float(np.mean([f["mean_forward_speed"] for f in finals])) / trot_speed, 3),
        "finetuned_is": "best_model.zip (fastest evaluation with <= rl.select_max_fall_rate falls, confirmed on "
                        "rl.confirm_episodes more), else final_model.zip",
        "train_fall_rate_first_50k": None if not finals else
            round(float(np.mean([results[name]["ppo"]["train_fall_rate_first_50k"] or 0.0
                                 for name, _, kind in jobs if kind == "bc_init"])), 3),
        "finetuned_last_speed_mps": mean_of(lasts, "mean_forward_speed", 4),
        "finetuned_last_fall_rate": mean_of(lasts, "fall_rate", 3),
        "target_speed_mps": round(target, 4),
        "steps_to_target": steps,
        "steps_to_target_median": {k: v[0] for k, v in medians.items()},
        "steps_to_target_median_is_bound": {k: v[1] for k, v in medians.items()},
        "scratch_final_speed_mps": mean_of(scratch_finals, "mean_forward_speed", 4),
        "scratch_final_fall_rate": mean_of(scratch_finals, "fall_rate", 3),
        "scratch_preset": args.scratch_preset, "scratch_settings": load_preset(args.scratch_preset),
        "speedup_ratio": None if speedup is None else round(speedup, 2),
        "speedup_ratio_is_lower_bound": lower_bound,
        "budget_steps": budget, "seeds": seeds, "eval_freq": eval_freq, "eval_episodes": eval_eps,
        "n_demo_episodes": n_demos, "bc_epochs": bc_epochs, "quick": q, "vec_env": args.vec_env,
        "protocol": "smoke (--quick)" if q else "quick (--budget quick, not the reference)" if budget_quick else "reference",
        "workers": args.workers, "preset": preset, "settings": dict(typed),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    write_result("sample_efficiency", figures)
    (RESULTS / "sample_efficiency_histories.json").write_text(json.dumps(histories_all))
    plot(histories_all, trot_speed, target, RESULTS / "sample_efficiency.png")


def algorithm_figures(runs: list[tuple[list[dict], dict]], target: float, bc_return: float, budget: int) -> dict:
    """The `algorithms` entry of one algorithm: (evaluation history, pipeline summary) per seed."""
    rl = [summary.get("ppo") or summary.get("off_policy") for _, summary in runs]
    shipped = [shipped_eval(r) for r in rl]
    after = [[h["mean_return"] for h in history if h["timesteps"] >= 10_000] for history, _ in runs]
    median, _ = median_steps([steps_to_target(history, target) for history, _ in runs], budget)
    rates = {k: [r[k] for r in rl if r.get(k) is not None] for k in ("intervention_rate_first20",
                                                                      "intervention_rate_last20")}
    return {"steps_to_target": [steps_to_target(history, target) for history, _ in runs],
            "steps_to_target_median": median,
            "final_speed_mps": round(float(np.mean([e["mean_forward_speed"] for e in shipped])), 4),
            "final_fall_rate": round(float(np.mean([e["fall_rate"] for e in shipped])), 3),
            "min_return_ratio_after_10k": round(min(min(a) for a in after) / bc_return, 3) if all(after) else None,
            **{k: round(float(np.mean(v)), 4) if v else None for k, v in rates.items()},
            "budget_steps": budget}


def mean_of(evals: list[dict], key: str, digits: int) -> float | None:
    return round(float(np.mean([e[key] for e in evals])), digits) if evals else None


def budget_arg(text: str) -> str | int:
    if text == "quick":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'quick' or a number of steps, got {text!r}") from None
    if not 1_000 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"must be 'quick' or 1,000..10^9 steps, got {value}")
    return value


def median_steps(values: list[int | None], budget: int) -> tuple[float | None, bool]:
    """(median steps to target, whether a seed that never got there decides it); None if most never did."""
    padded = sorted(v if v is not None else budget + 1 for v in values)
    n = len(padded)
    middle = padded[(n - 1) // 2: n // 2 + 1]
    if all(v > budget for v in middle):
        return None, True
    return float(np.mean([min(v, budget) for v in middle])), any(v > budget for v in middle)


def run_settings(common: dict, name: str, seed: int, extra: list[tuple[str, str]],
                 algo: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """One run's settings in the order they apply: the protocol's preset, the algorithm's settings (ALGOS), the
    command line's (so `--set` overrides an algorithm's defaults), then the run's name, seed and `extra` (the
    protocol's budgets and starting policy)."""
    own = [("experiment_name", name), ("output_dir", common["workdir"]), ("seed", str(seed))]
    return [("@preset", common["preset"]), *algo, *common["typed"], *own, *extra]


def pipeline(common: dict, name: str, seed: int, extra: list[tuple[str, str]],
             algo: list[tuple[str, str]] = ()) -> dict:
    """One run of the real pipeline (module-level so worker processes can run it)."""
    import torch
    torch.set_num_threads(1)
    return run(build_config([], run_settings(common, name, seed, extra, algo)))


ALGOS: dict[str, list[tuple[str, str]]] = {           # the settings of each algorithm's runs
    "ppo_handoff": [], "ppo_scratch": [],
    "sac_rlpd": [("rl.algo", "sac"), ("off_policy.demo_ratio", "0.5")],
    "sac_rlpd_interventions": [("rl.algo", "sac"), ("off_policy.demo_ratio", "0.5"), ("off_policy.intervention", "expert")],
    "sac_scratch": [("rl.algo", "sac"), ("off_policy.demo_ratio", "0")],
}
START_OF = {"ppo_handoff": "bc_init", "ppo_scratch": "scratch"}      # the PPO runs' folder prefixes
LABELS = {"ppo_handoff": "PPO from BC", "ppo_scratch": "PPO from scratch", "sac_rlpd": "SAC-RLPD from BC",
          "sac_rlpd_interventions": "SAC-RLPD + expert interventions", "sac_scratch": "SAC from scratch"}


def plot(histories: dict, trot_speed: float, target: float, path: Path) -> None:
    speed_curves({LABELS[k]: v for k, v in histories.items()}, path, "PiDog: fine-tuning algorithms (evaluated speed)",
                 [(trot_speed, f"trot {trot_speed:.3f} m/s", "gray", "--"),
                  (target, f"target 1.1x trot {target:.3f} m/s", "green", ":")])


if __name__ == "__main__":
    import sys

    from training.cli import run_guarded
    sys.exit(run_guarded(main))
