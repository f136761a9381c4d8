"""Robustness outside the training ranges: a policy and the trot through the robot runtime.

    pidog evaluate --suite robustness --model outputs/<exp>/best_model.zip [--episodes 20] [--workers 2]
    pidog evaluate --suite robustness --model outputs/<exp>/export/policy.onnx   # the exported policy

Every policy runs through `deploy.runtime.ControlLoop` (what the robot runs: observation builder, safety
layer, tilt stop) against `deploy.hardware.MujocoHardware` with the robot's IMU timing, on `episodes`
randomized episodes per condition. A condition keeps the policy's training randomization and pushes one
factor past its training range (`CONDITIONS`). A command-task policy holds the fastest forward command of
its training range, straight ahead. Episode i of every policy and condition uses seed
`seed + i`, so the trot and the policy meet the same robots.

Each condition is labelled `in_range` (inside the modelled, trained ranges: only `nominal`) or outside them.
Per condition and policy: mean forward speed, fall rate, the falls by cause (the env's `fall_cause`:
`tilt`, `torso_touch`, `head_touch`, or `runtime_tilt_stop` when the runtime's tilt stop ended the episode
first) and which episodes fell; per condition, whether the policy falls at most as often as the trot and
walks at least as fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from training.suites import TROT

SEED_BASE = 30_000
DEFAULT_EPISODES = 20
# Each condition: the training randomization plus these settings, each past its (default) training range.
CONDITIONS: dict[str, dict[str, object]] = {
    "nominal": {},                                                          # the training ranges themselves
    "slippery_floor": {"randomization.friction": (0.3, 0.4)},               # trained on 0.5-1.2
    "heavier_body": {"randomization.mass_scale": (1.25, 1.35)},             # trained on 0.85-1.15
    "weaker_servos": {"randomization.supply": (0.6, 0.7)},                  # trained on 0.85-1.05
    "longer_latency": {"randomization.latency_steps": (3, 4)},              # trained on 0-2 control steps
    "stale_imu": {"imu.hold_steps": 3, "randomization.imu_delay_substeps": (3, 4)},   # a 60 ms held sample
    # (like the vendor's 19 Hz IMU thread), 12-16 ms old; trained on a fresh sample 0-8 ms old
    "calibration_errors": {"randomization.calibration_deg": 6.0},           # trained on +-3 deg
    "stronger_pushes": {"randomization.push_velocity": 0.12,                # trained on 0.06 m/s
                        "randomization.push_interval_s": (1.0, 1.9)},       # every 2-5 s
}
IN_RANGE = frozenset({"nominal"})        # the conditions inside the modelled ranges; the others are past them


def condition_config(base: EnvConfig, name: str) -> EnvConfig:
    """`base` with randomization on and condition `name`'s settings applied, validated."""
    cfg = config_tree.apply(base, "randomization.enabled", True)
    for key, value in CONDITIONS[name].items():
        cfg = config_tree.apply(cfg, key, value)
    config_tree.validate(cfg)
    return cfg


def load(source: str, env_cfg: EnvConfig, allow_pickle: bool = False):
    """(spec, policy callable) for the runtime: `trot`, a .zip/.pth policy, or an exported policy.onnx."""
    from training.export import spec_for
    if source == TROT:
        from pidog_env.gaits import TrotGait
        return spec_for(env_cfg, TROT), TrotGait.for_config(env_cfg)
    path = Path(source)
    if path.suffix == ".onnx":
        from deploy.policy_spec import PolicySpec
        from deploy.runtime import OnnxPolicy
        spec = PolicySpec.load(path.with_name("policy.json"))
        return spec, OnnxPolicy(path, spec)
    from training.evaluation import policy_callable
    from training.policies import load_policy
    policy, meta = load_policy(path, allow_pickle=allow_pickle)
    return spec_for(meta.get("env_config_obj") or env_cfg, str(path)), policy_callable(policy)


def held_command(cfg: EnvConfig):
    """A command-task policy walks the fastest forward command it was trained on, straight ahead."""
    from deploy.commands import FixedSource
    return FixedSource(cfg.command.vx_range[1], 0.0, cfg.command.vx_range, cfg.command.wz_range)


def run_condition(name: str, base: EnvConfig, sources: dict[str, str], episodes: int, seed: int,
                  allow_pickle: bool = False) -> dict[str, dict[str, Any]]:
    """Every policy on one condition (a worker process)."""
    import torch
    torch.set_num_threads(1)
    from deploy.hardware import MujocoHardware
    from deploy.runtime import ControlLoop
    cfg = condition_config(base, name)
    out = {}
    for label, source in sources.items():
        spec, policy = load(source, cfg, allow_pickle)
        speeds, falls, causes = [], [], {}
        for i in range(episodes):
            hw = MujocoHardware(randomize=True, seed=seed + i, config=cfg)
            loop = ControlLoop(spec, policy, hw, realtime=False, say=lambda line: None,
                               commands=held_command(cfg) if spec.command else None)
            stop = loop.run(cfg.episode_seconds)
            if stop.kind in ("error", "aborted"):            # not an episode: the policy or the runtime broke
                raise RuntimeError(f"{label} on {name}: the runtime stopped with {stop.kind}: {stop.message}")
            fell = hw.terminated or stop.message == "tilt beyond the fall limit"
            speeds.append(hw.info["mean_forward_speed"])
            falls.append(float(fell))
            if fell:      # the env's reason, else the runtime's own tilt stop (before the env's limit)
                cause = hw.fall_cause or "runtime_tilt_stop"
                causes[cause] = causes.get(cause, 0) + 1
            hw.close()
        out[label] = {"speed_mps": round(float(np.mean(speeds)), 4), "fall_rate": round(float(np.mean(falls)), 3),
                      "fall_causes": dict(sorted(causes.items())),
                      "fall_episodes": [i for i, f in enumerate(falls) if f]}
        why = ", ".join(f"{k} {v}" for k, v in out[label]["fall_causes"].items())
        print(f"{name:<20} {label:<10} speed {out[label]['speed_mps']:.3f} m/s  falls {out[label]['fall_rate']:.0%}"
              + (f" ({why})" if why else ""), flush=True)
    return out


def verdicts(conditions: dict[str, dict[str, dict]], label: str) -> dict[str, dict[str, bool]]:
    """Per condition: the policy falls at most as often as the trot, and walks at least as fast."""
    return {name: {"falls_at_most_trot": row[label]["fall_rate"] <= row[TROT]["fall_rate"] + 1e-9,
                   "speed_at_least_trot": row[label]["speed_mps"] >= row[TROT]["speed_mps"]}
            for name, row in conditions.items()}


def run(source: str, base: EnvConfig, episodes: int, seed: int, workers: int, allow_pickle: bool = False,
        conditions: list[str] | None = None) -> dict[str, Any]:
    names = conditions or list(CONDITIONS)
    for name in names:
        condition_config(base, name)                     # a condition that does not fit fails before any work
    sources = {TROT: TROT} if source == TROT else {TROT: TROT, "policy": source}
    from training.suites import run_units
    rows = run_units({n: (run_condition, (n, base, sources, episodes, seed, allow_pickle)) for n in names}, workers)
    out: dict[str, Any] = {"suite": "robustness", "model": source, "episodes": episodes, "seed_base": seed,
                           "episode_seconds": base.episode_seconds, "conditions": rows,
                           "condition_settings": {n: CONDITIONS[n] for n in names},
                           "in_range": {n: n in IN_RANGE for n in names},
                           "held_command": [base.command.vx_range[1], 0.0] if base.command.enabled else None}
    if "policy" in sources:
        out["verdicts"] = verdicts(rows, "policy")
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, row in result["conditions"].items():
        cells = "  ".join(f"{label} {f['speed_mps']:.3f} m/s {f['fall_rate']:>4.0%} falls" for label, f in row.items())
        verdict = result.get("verdicts", {}).get(name)
        note = "" if verdict is None else ("  holds" if all(verdict.values()) else
                                           "  misses: " + ", ".join(k for k, ok in verdict.items() if not ok))
        where = "in range " if name in IN_RANGE else "outside  "
        lines.append(f"{name:<20} {where}{cells}{note}")
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    conditions = result["conditions"]
    names = list(conditions)
    labels = list(next(iter(conditions.values())))
    x = np.arange(len(names))
    width = 0.8 / len(labels)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    for j, label in enumerate(labels):
        for ax, key in zip(axes, ("speed_mps", "fall_rate")):
            ax.bar(x + (j - (len(labels) - 1) / 2) * width, [conditions[n][label][key] for n in names], width,
                   label=label if label != "policy" else Path(result["model"]).name)
    axes[0].set_ylabel("forward speed (m/s)")
    axes[1].set_ylabel("fall rate")
    axes[1].set_ylim(0, 1)
    axes[1].set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"Through the robot runtime, outside the training ranges ({result['episodes']} episodes each)")
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
