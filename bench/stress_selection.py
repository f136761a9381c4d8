"""Does an evaluation on widened randomization ranges predict the robustness suite? Checkpoint by checkpoint.

    python bench/stress_selection.py --run outputs/<exp>                  # its checkpoints, best and final model
    python bench/stress_selection.py --policy a=path/ppo_300000_steps.zip --policy b=path/best_model.zip
    python bench/stress_selection.py --run <run> --stress-episodes 60 --conditions weaker_servos

`best_model.zip` is selected on the training randomization, where every late checkpoint falls in 0-3 %
of the episodes, while the same checkpoints differ several-fold outside the training ranges (stop 39:
weaker servos 0-65 % across one run's checkpoints 100k steps apart). This bench measures whether a
cheaper, generic stress evaluation would tell them apart: each checkpoint runs through the robot runtime
(as in bench/robustness.py) on `STRESS` (the training randomization with its ranges widened, seeds
40,000+, disjoint from the suite's 30,000+) and on the suite's conditions (`--conditions`, default the
five that make policies fall). It prints a table, the Pearson and Spearman correlations between the
stress fall rate and the summed suite fall rate, and writes bench/results/stress_selection.json and a
scatter plot, bench/results/stress_selection.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, worker_pool, write_result
from bench.robustness import CONDITIONS, config_with, parse_policy

STRESS_SEED_BASE = 40_000     # disjoint from the suite (30,000+), the final figures (20,000+), evaluations (10,000+)
# The training randomization with each range that makes a gait fall pushed out, part of the way to the suite's
# conditions (the suite goes further and changes one factor at a time; this changes all at once).
STRESS: dict[str, object] = {
    "randomization.torque_scale": (0.68, 1.25),     # trained on 0.75-1.25; the suite's weaker servos 0.6-0.7
    "randomization.mass_scale": (0.85, 1.25),       # trained on 0.85-1.15; the suite's heavier body 1.25-1.35
    "randomization.calibration_deg": 4.5,           # trained on +-3 deg; the suite +-6
    "randomization.push_velocity": 0.22,            # trained on 0.15 m/s; the suite 0.3 (and more often)
    "randomization.latency_steps": (0, 3),          # trained on 0-2 control steps; the suite 3-4
}
HARD_CONDITIONS = ["heavier_body", "weaker_servos", "calibration_errors", "stronger_pushes", "longer_latency"]


def stress_config():
    return config_with(STRESS)


def evaluate(label: str, path: str, stress_episodes: int, conditions: list[str], episodes: int) -> dict:
    """One checkpoint on the stress set and on each suite condition (a worker process)."""
    from bench.robustness import run_condition, run_config
    out = {"path": path, "stress": run_config("stress", stress_config(), {label: path}, stress_episodes,
                                              STRESS_SEED_BASE)[label]}
    out["suite"] = {name: run_condition(name, {label: path}, episodes)[label] for name in conditions}
    out["suite_fall_sum"] = round(sum(r["fall_rate"] for r in out["suite"].values()), 3)
    return out


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their mean rank (for Spearman's correlation)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    for value in np.unique(x):
        tied = x == value
        r[tied] = r[tied].mean()
    return r


def correlations(x: list[float], y: list[float]) -> dict[str, float | None]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:          # a constant has no correlation
        return {"pearson": None, "spearman": None}
    return {"pearson": round(float(np.corrcoef(x, y)[0, 1]), 3),
            "spearman": round(float(np.corrcoef(ranks(x), ranks(y))[0, 1]), 3)}


def run_policies(run: Path) -> dict[str, Path]:
    """A training run's checkpoints (in step order), then its best and final model."""
    from training.experiment import Experiment, checkpoints
    found = {f"{steps // 1000}k": p for steps, p in checkpoints(run / Experiment.CHECKPOINTS)}
    for name in ("best_model.zip", "final_model.zip"):
        if (run / name).is_file():
            found[name.removesuffix(".zip")] = run / name
    return found


def plot(rows: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, r in rows.items():
        x, y = r["stress"]["fall_rate"], r["suite_fall_sum"]
        ax.scatter(x, y, color="tab:blue")
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("fall rate on the widened ranges (stress)")
    ax.set_ylabel("summed fall rate over the suite's conditions")
    ax.set_title("Checkpoints: stress evaluation against the robustness suite")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"-> {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, action="append", default=[],
                    help="a training run's folder: its checkpoints/*_steps.zip, best_model.zip and final_model.zip")
    ap.add_argument("--policy", type=parse_policy, action="append", default=[], metavar="LABEL=PATH",
                    help="one more policy (.pth, .zip, or policy.onnx beside its policy.json)")
    ap.add_argument("--stress-episodes", type=int, default=30, help="episodes on the widened ranges per policy")
    ap.add_argument("--episodes", type=int, default=20, help="episodes per suite condition and policy")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=HARD_CONDITIONS)
    ap.add_argument("--workers", type=int, default=2, help="policies evaluated in parallel")
    args = ap.parse_args()
    if not (1 <= args.stress_episodes <= 1000 and 1 <= args.episodes <= 1000 and 1 <= args.workers <= 64):
        ap.exit(2, "error: --stress-episodes and --episodes must be in 1..1000, --workers in 1..64\n")
    policies: dict[str, Path] = {}
    for run in args.run:
        found = run_policies(run)
        if not found:
            ap.exit(2, f"error: {run} holds no checkpoints/*_steps.zip, best_model.zip or final_model.zip\n")
        prefix = f"{run.name}:" if len(args.run) > 1 else ""
        policies.update({prefix + k: v for k, v in found.items()})
    policies.update(dict(args.policy))
    if not policies:
        ap.exit(2, "error: give --run DIR or --policy LABEL=PATH\n")
    stress_config()                       # the ranges are valid before any worker starts
    t0 = time.perf_counter()
    with worker_pool(args.workers) as pool:
        futures = {label: pool.submit(evaluate, label, str(path), args.stress_episodes, args.conditions,
                                      args.episodes) for label, path in policies.items()}
        rows = {label: f.result() for label, f in futures.items()}
    width = max(len(k) for k in rows)
    print(f"{'policy':<{width}}  stress speed/falls  " + "  ".join(f"{c[:14]:>14}" for c in args.conditions)
          + "  suite falls summed")
    for label, r in rows.items():
        print(f"{label:<{width}}  {r['stress']['speed_mps']:.3f} / {r['stress']['fall_rate']:4.0%}    "
              + "  ".join(f"{r['suite'][c]['speed_mps']:.3f} / {r['suite'][c]['fall_rate']:3.0%}" for c in args.conditions)
              + f"  {r['suite_fall_sum']:.2f}")
    corr = correlations([r["stress"]["fall_rate"] for r in rows.values()], [r["suite_fall_sum"] for r in rows.values()])
    write_result("stress_selection", {
        "policies": rows, "stress_vs_suite_falls": corr, "stress_settings": STRESS,
        "stress_episodes": args.stress_episodes, "stress_seed_base": STRESS_SEED_BASE,
        "episodes": args.episodes, "conditions": args.conditions,
        "wall_seconds": round(time.perf_counter() - t0, 1)})
    plot(rows, RESULTS / "stress_selection.png")


if __name__ == "__main__":
    main()
