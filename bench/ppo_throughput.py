"""PPO training throughput on PiDog-v0: env steps per second including the PPO updates.

    python bench/ppo_throughput.py [--n-envs 4] [--seconds 30]

Builds the pipeline's PPO (training.pipeline.build_model, default hyperparameters, from scratch: its
random policy falls every few dozen steps, so env resets are included at a pessimistic rate) over
SubprocVecEnv (ppo_steps_per_s, the pipeline default) and over DummyVecEnv (all envs in one process,
ppo_steps_per_s_dummy_vec_env), each after one warm-up rollout+update, timing whole rollout+update
iterations for `--seconds` each (about 50 s in all). Writes bench/results/ppo_throughput.json with
ppo_steps_per_s (target >= 1500 with 4 envs on 2 cores).
"""

from __future__ import annotations

import argparse
import time


import torch
from stable_baselines3.common.callbacks import BaseCallback

from bench._common import write_result
from training.common import make_vec_env
from training.config import PipelineConfig
from training.pipeline import build_model


class _Timer(BaseCallback):
    """Marks the wall time at the start of each rollout (= end of the previous rollout+update) and stops
    training once `seconds` have passed since the first mark after the warm-up iteration."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.marks: list[tuple[float, int]] = []

    def _on_rollout_start(self) -> None:
        self.marks.append((time.perf_counter(), self.num_timesteps))

    def _on_step(self) -> bool:
        return len(self.marks) < 2 or time.perf_counter() - self.marks[1][0] < self.seconds


def measure(n_envs: int, subprocess: bool, seconds: float) -> tuple[float, int, float]:
    """(steps/s, timed steps, timed seconds) of PPO learning over whole iterations after a warm-up one."""
    cfg = PipelineConfig(seed=0)
    venv = make_vec_env(cfg.env, n_envs, seed=0, subprocess=subprocess)
    model = build_model(cfg, venv, from_bc=False)
    timer = _Timer(seconds)
    model.learn(total_timesteps=10**9, callback=timer)
    venv.close()
    if len(timer.marks) < 3:
        raise SystemExit("too few iterations timed; raise --seconds")
    (t0, s0), (t1, s1) = timer.marks[1], timer.marks[-1]          # whole iterations after the warm-up
    return (s1 - s0) / (t1 - t0), s1 - s0, t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="timed duration per vec-env kind")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = PipelineConfig(seed=0)
    start = time.perf_counter()
    sub_rate, sub_steps, sub_secs = measure(args.n_envs, True, args.seconds)
    dummy_rate, _, _ = measure(args.n_envs, False, args.seconds)
    write_result("ppo_throughput", {
        "ppo_steps_per_s": round(sub_rate, 1),
        "ppo_steps_per_s_dummy_vec_env": round(dummy_rate, 1),
        "timed_steps": sub_steps,
        "timed_seconds": round(sub_secs, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        "n_envs": args.n_envs,
        "n_steps_per_env": cfg.ppo.n_steps, "batch_size": cfg.ppo.batch_size, "n_epochs": cfg.ppo.n_epochs,
        "net_arch": list(cfg.policy.net_arch),
        "target": {"ppo_steps_per_s": ">= 1500 (4 envs, 2 cores)"},
    })


if __name__ == "__main__":
    main()
