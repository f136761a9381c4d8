"""What one visualization costs against the training time between two of them.

    python bench/visualization_overhead.py [--seconds 20]

In one run: (1) PPO throughput of the pipeline's default PPO (SubprocVecEnv, 4 envs) over whole
rollout+update iterations -> the wall time of 50,000 steps (the default --visualize-freq); (2) one
full visualization exactly as the training callback does it: a 20 s deterministic episode (the trot
stands in for a policy that walks the whole episode) rendered to frames, the mp4, the TensorBoard
clip and the dashboard. render_fraction = (2) / (1). Writes bench/results/visualization_overhead.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


from bench._common import write_result
from bench.ppo_throughput import measure
from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait
from training.config import RLConfig
from training.visualization import (log_video_to_tensorboard, record_episode, save_dashboard,
                                    write_mp4)


def one_visualization(out: Path) -> tuple[float, dict]:
    from torch.utils.tensorboard import SummaryWriter
    gait = TrotGait.for_config(EnvConfig())
    writer = SummaryWriter(str(out / "tb"))
    start = time.perf_counter()
    frames, stats = record_episode(gait, EnvConfig(), seed=0, title="bench")
    write_mp4(out / "videos" / "step_50000.mp4", frames, stats["fps"])
    log_video_to_tensorboard(writer, "visualization/episode", frames, 50_000, stats["fps"])
    evals = [{"timesteps": t, "mean_return": 900.0, "mean_forward_speed": 0.12, "mean_length": 1000,
              "fall_rate": 0.0} for t in range(0, 500_000, 25_000)]
    save_dashboard(out / "plots" / "training_curves.png", evals, evals)
    seconds = time.perf_counter() - start
    writer.close()
    return seconds, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="timed PPO training")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    freq = RLConfig().visualize_freq
    rate, _, _ = measure(4, True, args.seconds)
    between = freq / rate
    with tempfile.TemporaryDirectory() as tmp:
        render_s, stats = one_visualization(Path(tmp))
    write_result("visualization_overhead", {
        "render_fraction": round(render_s / between, 4),
        "visualization_seconds": round(render_s, 2),
        "episode_seconds": round(stats["seconds"], 1),
        "video_fps": stats["fps"],
        "seconds_between_visualizations": round(between, 1),
        "ppo_steps_per_s": round(rate, 1),
        "visualize_freq": freq,
        "target": {"render_fraction": "< 0.10"},
    })


if __name__ == "__main__":
    main()
