"""PPO training throughput on the PiDog env: env steps per second including the PPO updates.

    python bench/ppo_throughput.py [--n-envs 4] [--seconds 20] [--rounds 2] [--n-steps 512]

Builds the pipeline's PPO (training.ppo_stage.build_model, default hyperparameters, from scratch: its
random policy falls every few dozen steps, so env resets are included at a pessimistic rate) over
three vector envs and times whole rollout+update iterations after one warm-up iteration:
- `batched` (ppo_steps_per_s): training.vec_env.BatchedSubprocVecEnv, the pipeline's default: one
  worker process per core, each stepping a block of envs per message, observations and actions in
  shared memory;
- `subproc` (ppo_steps_per_s_sb3_subproc): SB3's SubprocVecEnv, one process per env (what the
  pipeline used before): the baseline of `speedup_vs_sb3_subproc`;
- `dummy` (ppo_steps_per_s_dummy_vec_env): every env in the training process.
The kinds are measured in interleaved rounds (`--seconds` each in all, split over `--rounds`) so that
load changes on a shared machine hit all three alike; each kind times at least one whole iteration
after its warm-up one, however short `--seconds`. `--n-steps` shortens the rollout (default: the
pipeline's ppo.n_steps; the minibatch is at most one rollout), a smoke test's budget: the figures are
then not the pipeline's. Writes bench/results/ppo_throughput.json (target: ppo_steps_per_s >= 1500
with 4 envs on 2 cores, and >= 1.3x the SubprocVecEnv baseline).
"""

from __future__ import annotations

import argparse
import time


import torch
from stable_baselines3.common.callbacks import BaseCallback

from bench._common import write_result
from pidog_env import config_tree
from training.common import make_vec_env
from training.config import PipelineConfig
from training.ppo_stage import build_model
from training.vec_env import default_workers


class _Timer(BaseCallback):
    """Marks the wall time at the start of each rollout (= end of the previous rollout+update) and stops
    training once `seconds` have passed since the first mark after the warm-up iteration, and not before
    one whole iteration after the warm-up has been timed (a short `seconds` is a minimum, never zero)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.marks: list[tuple[float, int]] = []

    def _on_rollout_start(self) -> None:
        self.marks.append((time.perf_counter(), self.num_timesteps))

    def _on_step(self) -> bool:
        return len(self.marks) < 3 or time.perf_counter() - self.marks[1][0] < self.seconds


def ppo_config(n_envs: int, n_steps: int | None = None) -> PipelineConfig:
    """The pipeline's defaults (seed 0); `n_steps` a shorter rollout, the minibatch at most one rollout."""
    cfg = PipelineConfig(seed=0)
    if n_steps is not None:
        cfg = config_tree.apply(cfg, "ppo.n_steps", n_steps)
        cfg = config_tree.apply(cfg, "ppo.batch_size", min(cfg.ppo.batch_size, n_steps * n_envs))
    return cfg


def measure(n_envs: int, kind: str, seconds: float, n_steps: int | None = None) -> tuple[int, float]:
    """(timed steps, timed seconds) of PPO learning over whole iterations after a warm-up one, over the vec
    env `kind` ("batched", "subproc" or "dummy")."""
    if kind not in KINDS:
        raise ValueError(f"unknown vec env kind {kind!r} (one of {', '.join(KINDS)})")
    cfg = ppo_config(n_envs, n_steps)
    venv = make_vec_env(cfg.env, n_envs, seed=0, subprocess=kind != "dummy", kind=kind)
    try:
        model = build_model(cfg, venv, from_bc=False)
        timer = _Timer(seconds)
        model.learn(total_timesteps=10**9, callback=timer)
    finally:
        venv.close()                       # an error must not leave the worker processes behind
    if len(timer.marks) < 3:
        raise SystemExit("too few iterations timed; raise --seconds")
    (t0, s0), (t1, s1) = timer.marks[1], timer.marks[-1]          # whole iterations after the warm-up
    return s1 - s0, t1 - t0


KINDS = ("subproc", "batched", "dummy")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="timed duration per vec-env kind (all rounds)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds the time is split into")
    ap.add_argument("--n-steps", type=int, default=None,
                    help="PPO rollout length per env (default: the pipeline's ppo.n_steps)")
    args = ap.parse_args(argv)
    if not 2 <= args.n_envs <= 256:
        ap.exit(2, "error: --n-envs must be in 2..256\n")
    if not 0 < args.seconds <= 3600:
        ap.exit(2, "error: --seconds must be in (0, 3600]\n")
    if not 1 <= args.rounds <= 100:
        ap.exit(2, "error: --rounds must be in 1..100\n")
    if args.n_steps is not None and not 2 <= args.n_steps <= 100_000:
        ap.exit(2, "error: --n-steps must be in 2..100000\n")
    torch.set_num_threads(1)
    cfg = ppo_config(args.n_envs, args.n_steps)
    start = time.perf_counter()
    totals = {k: [0, 0.0] for k in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:
            steps, secs = measure(args.n_envs, kind, args.seconds / args.rounds, args.n_steps)
            totals[kind][0] += steps
            totals[kind][1] += secs
    rate = {k: steps / secs for k, (steps, secs) in totals.items()}
    write_result("ppo_throughput", {
        "ppo_steps_per_s": round(rate["batched"], 1),
        "ppo_steps_per_s_sb3_subproc": round(rate["subproc"], 1),
        "ppo_steps_per_s_dummy_vec_env": round(rate["dummy"], 1),
        "speedup_vs_sb3_subproc": round(rate["batched"] / rate["subproc"], 3),
        "timed_steps": {k: v[0] for k, v in totals.items()},
        "timed_seconds": {k: round(v[1], 2) for k, v in totals.items()},
        "total_seconds": round(time.perf_counter() - start, 2),
        "n_envs": args.n_envs, "workers": default_workers(args.n_envs), "rounds": args.rounds,
        "n_steps_per_env": cfg.ppo.n_steps, "batch_size": cfg.ppo.batch_size, "n_epochs": cfg.ppo.n_epochs,
        "net_arch": list(cfg.policy.net_arch),
        "target": {"ppo_steps_per_s": ">= 1500 (4 envs, 2 cores)", "speedup_vs_sb3_subproc": ">= 1.3"},
    })


if __name__ == "__main__":
    main()
