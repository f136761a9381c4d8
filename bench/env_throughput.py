"""The PiDog env's throughput against its own physics ceiling and gymnasium's Ant-v5, measured in one run.

    python bench/env_throughput.py [--seconds 5]

Every figure is env steps per second over at least `--seconds` of stepping, with the same protocol
for both envs (gymnasium.make, pre-sampled random actions, reset on episode end included). Writes
bench/results/env_throughput.json: pidog_steps_per_s, physics_ceiling_steps_per_s, ant_v5_steps_per_s,
camera_steps_per_s, and the ratios the targets are stated in.

The physics ceiling replays a PiDog run's own control sequence (the ctrl vectors the env sent and
the steps where episodes restarted) through bare mj_step(nstep=frame_skip) on the same model, so it
steps through the same contact-rich states: it is what the env would reach with zero Python cost.
PiDog, its ceiling and Ant-v5 are measured in interleaved rounds so that load changes on a shared
machine affect all three alike; the camera env (software GL threads) is measured on its own after.
The whole script takes about 30 s.
"""

from __future__ import annotations

import argparse
import time


import pidog_env  # noqa: F401  (first: it defaults MUJOCO_GL before mujoco is imported)

import gymnasium as gym
import mujoco
import numpy as np

from bench._common import write_result
from pidog_env import mjcf_names as names


class Stepper:
    """Steps one env with pre-sampled random actions, resetting at episode end; accumulates time."""

    def __init__(self, env: gym.Env, seed: int = 0, record: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.env = env
        self.actions = rng.uniform(-1, 1, (4096, *env.action_space.shape)).astype(np.float32)
        self.record: list | None = [] if record else None
        self.steps, self.seconds, self._reset_next = 0, 0.0, False
        env.reset(seed=seed)
        for i in range(50):                                   # warm-up (first render, caches)
            if any(env.step(self.actions[i])[2:4]):
                env.reset()

    def run(self, seconds: float) -> None:
        env, data = self.env, self.env.unwrapped.data
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(100):
                _, _, term, trunc, _ = env.step(self.actions[(self.steps + n) % 4096])
                if self.record is not None:
                    self.record.append((data.ctrl.copy(), self._reset_next))
                n += 1
                self._reset_next = term or trunc
                if self._reset_next:
                    env.reset()
        self.seconds += time.perf_counter() - start
        self.steps += n

    @property
    def rate(self) -> float:
        return self.steps / self.seconds


def replay_physics(env: gym.Env, record: list) -> tuple[int, float]:
    """Bare mj_step over a recorded control sequence (same model, same states, no Python env)."""
    base = env.unwrapped
    m, d, skip, key = base.model, base.data, base.cfg.frame_skip, base.model.key(names.STAND_KEY).id
    mujoco.mj_resetDataKeyframe(m, d, key)
    start = time.perf_counter()
    for ctrl, reset in record:
        if reset:
            mujoco.mj_resetDataKeyframe(m, d, key)
        d.ctrl[:] = ctrl
        mujoco.mj_step(m, d, nstep=skip)
    return len(record), time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="stepping time per figure (>= 5 s for figures to quote; less for a smoke test)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the time is split into")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 3600:
        parser.exit(2, "error: --seconds must be in (0, 3600]\n")
    if not 1 <= args.rounds <= 1000:
        parser.exit(2, "error: --rounds must be in 1..1000\n")
    chunk = args.seconds / args.rounds
    pidog = Stepper(gym.make(pidog_env.ENV_ID))
    recorder = Stepper(gym.make(pidog_env.ENV_ID), seed=1, record=True)     # feeds the physics replay
    ant = Stepper(gym.make("Ant-v5"))
    ceiling_steps, ceiling_seconds = 0, 0.0
    # Interleave short rounds so the shared machine's load changes hit every figure alike.
    for _ in range(args.rounds):
        pidog.run(chunk)
        recorder.record = []
        recorder.run(chunk)
        n, secs = replay_physics(recorder.env, recorder.record)
        while secs < chunk:                                            # replay until it has run >= chunk
            more_n, more_s = replay_physics(recorder.env, recorder.record)
            n, secs = n + more_n, secs + more_s
        ceiling_steps, ceiling_seconds = ceiling_steps + n, ceiling_seconds + secs
        ant.run(chunk)
    # The camera env renders through software GL, whose worker threads would disturb the CPU-only
    # figures above; it is measured on its own afterwards.
    camera = Stepper(gym.make(pidog_env.ENV_ID, use_camera=True))
    camera.run(args.seconds)
    ceiling = ceiling_steps / ceiling_seconds
    write_result("env_throughput", {
        "pidog_steps_per_s": round(pidog.rate, 1),
        "physics_ceiling_steps_per_s": round(ceiling, 1),
        "ant_v5_steps_per_s": round(ant.rate, 1),
        "camera_steps_per_s": round(camera.rate, 1),
        "pidog_vs_ant_ratio": round(pidog.rate / ant.rate, 3),
        "pidog_vs_ceiling_ratio": round(pidog.rate / ceiling, 3),
        "frame_skip": pidog.env.unwrapped.cfg.frame_skip,
        "seconds_per_figure": round(min(pidog.seconds, ceiling_seconds, ant.seconds, camera.seconds), 2),
        "rounds": args.rounds,
        "targets": {"pidog_vs_ant_ratio": ">= 1.5", "pidog_vs_ceiling_ratio": ">= 0.6",
                    "camera_steps_per_s": ">= 150"},
    })


if __name__ == "__main__":
    main()
