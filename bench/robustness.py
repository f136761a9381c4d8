"""Robustness outside the training ranges: policies through the robot runtime on the simulated robot.

    python bench/robustness.py                                   # trot, bc and finetuned (see below)
    python bench/robustness.py --policy mine=outputs/x/export/policy.onnx --policy bc=path/bc.pth
    python bench/robustness.py --episodes 5 --conditions nominal slippery_floor
    python bench/robustness.py --episodes 1 --episode-seconds 2 --conditions nominal    # a smoke test

Every policy runs through `deploy.runtime.ControlLoop` (the runtime the robot runs: observation
builder, safety layer, tilt stop) against `deploy.hardware.MujocoHardware` with the robot's IMU timing,
`--episodes` randomized 20 s episodes per condition (seeds 30,000 onwards, disjoint from training, the
pipeline's evaluations (10,000+) and its final figures (20,000+)). A condition keeps the training
randomization and pushes one factor past its training range (`CONDITIONS`). Policies: `trot` (the hard-coded gait), and, by default, `bc` and
`finetuned` from seed 0 of the most recent `bench/sample_efficiency.py` BC-init run (its BC policy and
its selected fine-tuned model, `best_model.zip`, else `final_model.zip`); `--policy LABEL=PATH` adds or
replaces one (`.pth`, `.zip`, or an exported `policy.onnx` with its `policy.json`).

`--all-seeds` adds that run's other seeds (`finetuned_seed1`, ...): one seed's verdict can turn on one
episode, and on a different CPU the same command trains a different policy (README, stop 39).

Writes bench/results/robustness.json, `{"conditions": {name: {label: {"speed_mps", "fall_rate", "fall_causes", "fall_episodes"}}}}`
plus `acceptance` (per condition, for `finetuned` and the mean over seeds: falls <= the trot's, falls
<= BC's + 0.05, speed >= the trot's)
(`fall_causes`: falls counted by the env's `fall_cause`, `tilt`, `torso_touch` or `head_touch`, or
`runtime_tilt_stop` when the runtime's tilt stop ended the episode first; `fall_episodes`: which
episodes fell, 0-based, episode i using seed 30,000 + i, the same draws for every policy),
and bench/results/robustness.png (grouped bars: speed and fall rate per condition).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, worker_pool, write_result

SEED_BASE = 30_000           # disjoint from training.evaluation's EVAL_SEED_BASE and FINAL_EVAL_SEED_BASE
# Each condition: the training randomization plus these settings, each past its training range.
CONDITIONS: dict[str, dict[str, object]] = {
    "nominal": {},                                                          # the training ranges themselves
    "slippery_floor": {"randomization.friction": (0.3, 0.4)},               # trained on 0.5-1.2
    "heavier_body": {"randomization.mass_scale": (1.25, 1.35)},             # trained on 0.85-1.15
    "weaker_servos": {"randomization.torque_scale": (0.6, 0.7)},            # trained on 0.75-1.25
    "longer_latency": {"randomization.latency_steps": (3, 4)},              # trained on 0-2 control steps
    "stale_imu": {"imu.hold_steps": 3, "randomization.imu_delay_substeps": (3, 4)},   # a 60 ms held sample
    # (like the vendor's 19 Hz IMU thread), 12-16 ms old; trained on a fresh sample 0-8 ms old
    "calibration_errors": {"randomization.calibration_deg": 6.0},           # trained on +-3 deg
    "stronger_pushes": {"randomization.push_velocity": 0.3,                 # trained on 0.15 m/s
                        "randomization.push_interval_s": (1.0, 1.9)},       # every 2-5 s
}
DEFAULT_RUNS = RESULTS / "sample_efficiency_runs"


def config_with(settings: dict[str, object]):
    """The default EnvConfig with `settings` (dotted keys) applied, validated."""
    from pidog_env import config_tree
    from pidog_env.config import EnvConfig
    cfg = EnvConfig()
    for key, value in settings.items():
        cfg = config_tree.apply(cfg, key, value)
    config_tree.validate(cfg)
    return cfg


def condition_config(name: str):
    return config_with(CONDITIONS[name])


def shipped_model(run: Path) -> Path | None:
    """A run's selected model, `best_model.zip`, else its `final_model.zip`; None when neither exists."""
    for name in ("best_model.zip", "final_model.zip"):
        if (run / name).is_file():
            return run / name
    return None


def default_policies(all_seeds: bool = False) -> dict[str, Path]:
    """`bc` and `finetuned` (seed 0) of the last bench/sample_efficiency.py run; with `all_seeds`, also
    `finetuned_seedN` for its other BC-initialized seeds."""
    out = {}
    bc = DEFAULT_RUNS / "bc" / "bc_pretrained_policy.pth"
    if bc.is_file():
        out["bc"] = bc
    if (path := shipped_model(DEFAULT_RUNS / "bc_init_seed0")) is not None:
        out["finetuned"] = path
    if all_seeds:
        seeds = sorted(int(s) for r in DEFAULT_RUNS.glob("bc_init_seed*")
                       if (s := r.name.removeprefix("bc_init_seed")).isdigit())
        for seed in seeds:
            if seed != 0 and (path := shipped_model(DEFAULT_RUNS / f"bc_init_seed{seed}")) is not None:
                out[f"finetuned_seed{seed}"] = path
    return out


def acceptance(conditions: dict) -> dict[str, dict[str, bool]]:
    """Issue 10's comparison per condition, for `finetuned` (seed 0) and, with other seeds, their mean:
    falls <= the trot's, falls <= BC's + 0.05, speed >= the trot's."""
    out = {}
    for name, row in conditions.items():
        seeds = [k for k in row if k == "finetuned" or k.startswith("finetuned_seed")]
        if "trot" not in row or not seeds:
            continue
        candidates = {"finetuned": row["finetuned"]} if "finetuned" in row else {}
        if len(seeds) > 1:
            candidates["finetuned_seed_mean"] = {k: float(np.mean([row[s][k] for s in seeds]))
                                                 for k in ("speed_mps", "fall_rate")}
        for label, fig in candidates.items():
            checks = {"falls_at_most_trot": fig["fall_rate"] <= row["trot"]["fall_rate"] + 1e-9,
                      "speed_at_least_trot": fig["speed_mps"] >= row["trot"]["speed_mps"]}
            if "bc" in row:
                checks["falls_at_most_bc_plus_0.05"] = fig["fall_rate"] <= row["bc"]["fall_rate"] + 0.05 + 1e-9
            out.setdefault(name, {})[label] = checks
    return out


def load(label: str, path: str | None, env_cfg):
    """(spec, policy callable) for the runtime; `path` None is the trot."""
    from training.export import spec_for
    if path is None:
        from pidog_env.gaits import TrotGait
        return spec_for(env_cfg, "trot"), TrotGait.for_config(env_cfg)
    path = Path(path)
    if path.suffix == ".onnx":
        from deploy.policy_spec import PolicySpec
        from deploy.runtime import OnnxPolicy
        spec = PolicySpec.load(path.with_name("policy.json"))
        return spec, OnnxPolicy(path, spec)
    from training.evaluation import policy_callable
    from training.policies import load_policy
    policy, meta = load_policy(path)
    cfg = meta.get("env_config_obj") or env_cfg
    act = policy_callable(policy)
    return spec_for(cfg, str(path)), act


def run_condition(name: str, policies: dict[str, str | None], episodes: int,
                  episode_seconds: float | None = None) -> dict[str, dict[str, float]]:
    """All policies on one condition (a worker process); `episode_seconds` shortens its episodes."""
    cfg = condition_config(name)
    if episode_seconds is not None:
        from pidog_env import config_tree
        cfg = config_tree.apply(cfg, "episode_seconds", episode_seconds)
    return run_config(name, cfg, policies, episodes)


def run_config(name: str, cfg, policies: dict[str, str | None], episodes: int,
               seed_base: int = SEED_BASE) -> dict[str, dict[str, float]]:
    """All policies through the runtime on `episodes` randomized episodes of env config `cfg` (seeds from
    `seed_base`), labelled `name` in the printed lines."""
    import torch
    torch.set_num_threads(1)
    from deploy.hardware import MujocoHardware
    from deploy.runtime import ControlLoop
    out = {}
    for label, path in policies.items():
        spec, policy = load(label, path, cfg)
        speeds, falls, causes = [], [], {}
        for i in range(episodes):
            hw = MujocoHardware(randomize=True, seed=seed_base + i, config=cfg)
            stop = ControlLoop(spec, policy, hw, realtime=False, say=lambda line: None).run(cfg.episode_seconds)
            if stop.kind in ("error", "aborted"):            # not an episode: the policy or the runtime broke
                raise RuntimeError(f"{label} on {name}: the runtime stopped with {stop.kind}: {stop.message}")
            fell = hw.terminated or stop.message == "tilt beyond the fall limit"
            speeds.append(hw.info["mean_forward_speed"])
            falls.append(float(fell))
            if fell:      # the env's reason, else the runtime's own tilt stop (before the env's limit)
                cause = hw.fall_cause or "runtime_tilt_stop"          # "" unless the env ended the episode
                causes[cause] = causes.get(cause, 0) + 1
            hw.close()
        out[label] = {"speed_mps": round(float(np.mean(speeds)), 4), "fall_rate": round(float(np.mean(falls)), 3),
                      "fall_causes": dict(sorted(causes.items())),
                      "fall_episodes": [i for i, f in enumerate(falls) if f]}
        why = ", ".join(f"{k} {v}" for k, v in out[label]["fall_causes"].items())
        print(f"{name:<20} {label:<12} speed {out[label]['speed_mps']:.3f} m/s  falls {out[label]['fall_rate']:.0%}"
              + (f" ({why})" if why else ""), flush=True)
    return out


def plot(conditions: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(conditions)
    labels = list(next(iter(conditions.values())))
    x = np.arange(len(names))
    width = 0.8 / len(labels)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    for j, label in enumerate(labels):
        for ax, key in zip(axes, ("speed_mps", "fall_rate")):
            ax.bar(x + (j - (len(labels) - 1) / 2) * width, [conditions[n][label][key] for n in names], width,
                   label=label)
    axes[0].set_ylabel("forward speed (m/s)")
    axes[1].set_ylabel("fall rate")
    axes[1].set_ylim(0, 1)
    axes[1].set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    axes[0].legend(fontsize=8)
    axes[0].set_title("PiDog-v1 through the robot runtime, outside the training ranges")
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"-> {path}")


def parse_policy(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    p = Path(path)
    if not p.is_file() or p.suffix not in (".pth", ".zip", ".onnx"):
        raise argparse.ArgumentTypeError(f"{path} is not a .pth, .zip or .onnx file")
    if p.suffix == ".onnx" and not p.with_name("policy.json").is_file():
        raise argparse.ArgumentTypeError(f"{p.with_name('policy.json')} not found beside {path}")
    return label, p


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", type=parse_policy, action="append", default=[], metavar="LABEL=PATH",
                    help="add or replace a policy (.pth, .zip, or policy.onnx beside its policy.json)")
    ap.add_argument("--episodes", type=int, default=20, help="randomized 20 s episodes per condition and policy")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    ap.add_argument("--workers", type=int, default=2, help="conditions evaluated in parallel")
    ap.add_argument("--all-seeds", action="store_true",
                    help="also every other seed's shipped model of that run (finetuned_seedN), and their mean")
    ap.add_argument("--episode-seconds", type=float, default=None,
                    help="episode length (default: the env's, 20 s; shorter only for a smoke test)")
    args = ap.parse_args(argv)
    if not (1 <= args.episodes <= 1000 and 1 <= args.workers <= 64):
        ap.exit(2, "error: --episodes must be in 1..1000 and --workers in 1..64\n")
    if args.episode_seconds is not None and not 0 < args.episode_seconds <= 3600:
        ap.exit(2, "error: --episode-seconds must be in (0, 3600]\n")
    policies: dict[str, str | None] = {"trot": None, **{k: str(v) for k, v in default_policies(args.all_seeds).items()}}
    policies.update({label: str(path) for label, path in args.policy})
    missing = [k for k in ("bc", "finetuned") if k not in policies]
    if missing:
        print(f"note: no {' or '.join(missing)} policy from a bench/sample_efficiency.py run in {DEFAULT_RUNS}; "
              "evaluating the others (pass --policy LABEL=PATH to add one)")
    t0 = time.perf_counter()
    with worker_pool(args.workers) as pool:
        futures = {name: pool.submit(run_condition, name, policies, args.episodes, args.episode_seconds)
                   for name in args.conditions}
        conditions = {name: f.result() for name, f in futures.items()}
    checks = acceptance(conditions)
    for name, by_label in checks.items():
        for label, c in by_label.items():
            failed = [k for k, ok in c.items() if not ok]
            print(f"{name:<20} {label:<20} " + ("holds" if not failed else "MISSES " + ", ".join(failed)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result("robustness", {"conditions": conditions, "acceptance": checks, "policies": {k: v or "TrotGait" for k, v in policies.items()},
                                "episodes": args.episodes, "seed_base": SEED_BASE,
                                "episode_seconds": args.episode_seconds or condition_config("nominal").episode_seconds,
                                "condition_settings": {n: {k: v for k, v in CONDITIONS[n].items()} for n in args.conditions},
                                "wall_seconds": round(time.perf_counter() - t0, 1)})
    plot(conditions, RESULTS / "robustness.png")


if __name__ == "__main__":
    main()
