"""What one visualization costs training, against the training time between two of them.

    python bench/visualization_overhead.py [--seconds 20] [--episode-seconds 20] [--n-steps 512]

In one run:
1. PPO throughput of the pipeline's default PPO (its default vec env, `rl.vec_env`, and `rl.n_envs`
   envs: BatchedSubprocVecEnv, 4 envs) over whole rollout+update iterations (bench/ppo_throughput.py's
   `measure`, at least `--seconds`) -> the wall time of 50,000 steps (the default --visualize-freq)
   between two clips.
2. One visualization exactly as the training callback does it now: the 20 s deterministic episode's
   rollout (the trot stands in for a policy that walks the whole episode) with its states saved, the
   background renderer started, and the dashboard -> `visualization_seconds`, what training waits for.
   render_fraction = (2) / (1).
3. The background render is not free: it shares the CPUs with training while it runs. Its CPU time
   (the render process's user + system time) is taken from the training processes, which use every
   core: `render_cpu_fraction` = ((2) + render CPU seconds / cores) / (1). The same PPO is also timed
   while a render runs beside it (niced, as in training) as a check. The old in-process path (render,
   mp4 and TensorBoard GIF inside the callback) is timed too, for the ratio in the same run
   (`inprocess_render_fraction`).
`--episode-seconds` shortens the visualized episode and `--n-steps` PPO's rollout (a smoke test's budget;
the figures then describe that shorter clip and that PPO: `episode_seconds` and `ppo_n_steps` say which).
Writes bench/results/visualization_overhead.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench._common import write_result
from bench.ppo_throughput import measure, ppo_config
from pidog_env import config_tree
from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait
from training.config import RLConfig
from training.experiment import Experiment
from training.visualization import (ClipRenderer, log_video_to_tensorboard, record_episode, rollout_states,
                                    save_dashboard, save_states, write_mp4)

EVALS = [{"timesteps": t, "mean_return": 900.0, "mean_forward_speed": 0.12, "mean_length": 1000,
          "fall_rate": 0.0} for t in range(0, 500_000, 25_000)]


def background_visualization(out: Path, env_cfg: EnvConfig) -> tuple[float, dict, ClipRenderer]:
    """What the callback does in training now; returns its wall time and the still-running renderer."""
    gait = TrotGait.for_config(env_cfg)
    renderer = ClipRenderer()
    start = time.perf_counter()
    states = rollout_states(gait, env_cfg, seed=0)
    renderer.submit(save_states(out / "step_50000.states.npz", states, env_cfg, "bench"),
                    out / "step_50000.mp4", 50_000)
    save_dashboard(out / Experiment.DASHBOARD, EVALS, EVALS)
    return time.perf_counter() - start, states["stats"], renderer


def finish(renderer: ClipRenderer) -> None:
    """Wait for the background render; a render that failed leaves nothing to measure."""
    for mp4, _, err in renderer.wait(timeout=600):
        if err is not None or not mp4.is_file():
            raise SystemExit(f"error: the background render of {mp4.name} failed: {err or 'no mp4 written'}")


def inprocess_visualization(out: Path, env_cfg: EnvConfig) -> float:
    """The previous callback: render, mp4, TensorBoard GIF and dashboard inside training."""
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(out / "tb"))
    start = time.perf_counter()
    frames, stats = record_episode(TrotGait.for_config(env_cfg), env_cfg, seed=0, title="bench")
    write_mp4(out / "old.mp4", frames, stats["fps"])
    log_video_to_tensorboard(writer, "visualization/episode", frames, 50_000, stats["fps"])
    save_dashboard(out / Experiment.PLOTS / "old.png", EVALS, EVALS)
    seconds = time.perf_counter() - start
    writer.close()
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="timed PPO training (at least one iteration)")
    ap.add_argument("--episode-seconds", type=float, default=EnvConfig().episode_seconds,
                    help="length of the visualized episode (default: the env's)")
    ap.add_argument("--n-steps", type=int, default=None,
                    help="PPO rollout length per env (default: the pipeline's ppo.n_steps)")
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 3600:
        ap.exit(2, "error: --seconds must be in (0, 3600]\n")
    if not 0 < args.episode_seconds <= 3600:
        ap.exit(2, "error: --episode-seconds must be in (0, 3600]\n")
    if args.n_steps is not None and not 2 <= args.n_steps <= 100_000:
        ap.exit(2, "error: --n-steps must be in 2..100000\n")
    import torch
    torch.set_num_threads(1)
    env_cfg = config_tree.apply(EnvConfig(), "episode_seconds", args.episode_seconds)
    rl = RLConfig()
    freq = rl.visualize_freq

    def ppo_rate() -> float:
        steps, seconds = measure(rl.n_envs, rl.vec_env, args.seconds, args.n_steps)   # the pipeline's PPO
        return steps / seconds

    rate = ppo_rate()
    between = freq / rate
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        viz_s, stats, renderer = background_visualization(out, env_cfg)
        t0 = time.perf_counter()
        finish(renderer)
        render_wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        render_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        # the check: PPO with a render of the same clip running beside it from the start
        _, _, again = background_visualization(out, env_cfg)
        rate_during = ppo_rate()
        finish(again)
        old_s = inprocess_visualization(out, env_cfg)
    write_result("visualization_overhead", {
        "render_fraction": round(viz_s / between, 4),
        "visualization_seconds": round(viz_s, 2),
        "render_cpu_fraction": round((viz_s + render_cpu / cores) / between, 4),
        "render_process_cpu_seconds": round(render_cpu, 2),
        "render_process_wall_seconds": round(render_wall, 2),
        "ppo_steps_per_s_while_rendering": round(rate_during, 1),
        "inprocess_visualization_seconds": round(old_s, 2),
        "inprocess_render_fraction": round(old_s / between, 4),
        "episode_seconds": round(stats["seconds"], 1),
        "video_fps": stats["fps"],
        "seconds_between_visualizations": round(between, 1),
        "ppo_steps_per_s": round(rate, 1),
        "ppo_vec_env": rl.vec_env, "ppo_n_envs": rl.n_envs,
        "ppo_n_steps": ppo_config(rl.n_envs, args.n_steps).ppo.n_steps,
        "visualize_freq": freq,
        "target": {"render_fraction": "<= 0.10 at 25 fps"},
    })


if __name__ == "__main__":
    main()
