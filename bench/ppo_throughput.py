"""PPO training throughput on PiDog-v0: env steps per second including the PPO updates.

    python bench/ppo_throughput.py [--n-envs 4] [--seconds 30]

Builds the pipeline's PPO (training.pipeline.build_model, default hyperparameters) over SubprocVecEnv,
runs one rollout+update to warm up (process start, first compile of everything), then times whole
rollout+update iterations for at least `--seconds`. Writes bench/results/ppo_throughput.json with
ppo_steps_per_s (target >= 1500 with 4 envs on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from bench._common import write_result  # noqa: E402
from training.common import make_vec_env  # noqa: E402
from training.config import PipelineConfig  # noqa: E402
from training.pipeline import build_model, env_config  # noqa: E402


class _Timer(BaseCallback):
    """Marks the wall time at the end of each rollout+update iteration (start of the next rollout)."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[float, int]] = []

    def _on_rollout_start(self) -> None:
        self.marks.append((time.perf_counter(), self.num_timesteps))

    def _on_step(self) -> bool:
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0, help="minimum timed duration")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = PipelineConfig(seed=0)
    cfg.ppo.n_envs = args.n_envs
    venv = make_vec_env(env_config(cfg), args.n_envs, seed=0)
    model = build_model(cfg, venv, from_bc=False)
    per_iter = cfg.ppo.n_steps * args.n_envs
    timer = _Timer()
    # Enough iterations for `seconds` at an optimistic 3000 steps/s, plus the warm-up iteration.
    iters = 1 + max(2, int(args.seconds * 3000 / per_iter))
    start = time.perf_counter()
    model.learn(total_timesteps=iters * per_iter, callback=timer)
    end = time.perf_counter()
    timer.marks.append((end, model.num_timesteps))
    venv.close()
    (t0, s0), (t1, s1) = timer.marks[1], timer.marks[-1]          # skip the warm-up iteration
    write_result("ppo_throughput", {
        "ppo_steps_per_s": round((s1 - s0) / (t1 - t0), 1),
        "timed_steps": s1 - s0,
        "timed_seconds": round(t1 - t0, 2),
        "total_seconds_including_warmup": round(end - start, 2),
        "n_envs": args.n_envs,
        "n_steps_per_env": cfg.ppo.n_steps, "batch_size": cfg.ppo.batch_size, "n_epochs": cfg.ppo.n_epochs,
        "net_arch": list(cfg.policy.net_arch),
        "target": {"ppo_steps_per_s": ">= 1500 (4 envs, 2 cores)"},
    })


if __name__ == "__main__":
    main()
