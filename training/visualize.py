"""Watch a policy walk: MuJoCo's interactive viewer in real time, or a recorded video.

    python training/visualize.py --gait trot                        # interactive viewer (needs a display)
    python training/visualize.py --model outputs/<exp>/final_model.zip --record walk.mp4 --episodes 2
    python training/visualize.py --compare outputs/<exp>/bc_pretrained_policy.pth outputs/<exp>/final_model.zip \\
                                 --record bc_vs_ppo.mp4           # side by side in one video

A model is an SB3 .zip written by this project or a BC .pth policy; "trot" stands for the gait anywhere
a model path is expected.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pidog_env.config import EnvConfig
from pidog_env.env import has_display
from training.common import PipelineError, make_env


def load_actor(source: str, allow_pickle: bool = False) -> tuple[Callable[[Any], np.ndarray], EnvConfig, str]:
    """(obs -> action, the env config it was trained on, a short label) for a model path or "trot"."""
    if source == "trot":
        from pidog_env.gaits import TrotGait
        env = make_env(EnvConfig())
        gait = TrotGait.for_env(env)
        env.close()
        return gait, EnvConfig(), "trot"
    from training.policies import load_policy
    policy, meta = load_policy(source, allow_pickle=allow_pickle)
    label = Path(source).stem.replace("_pretrained_policy", "").replace("_model", "")
    return (lambda obs: policy.predict(obs, deterministic=True)[0]), meta.get("env_config_obj") or EnvConfig(), label


def with_randomization(cfg: EnvConfig, on: bool) -> EnvConfig:
    cfg = dataclasses.replace(cfg)
    cfg.randomization = dataclasses.replace(cfg.randomization, enabled=on)
    return cfg


def interactive(act, cfg: EnvConfig, episodes: int, seed: int) -> None:
    """Real-time playback in MuJoCo's passive viewer with the tracking camera."""
    import mujoco
    from mujoco import viewer
    env = make_env(cfg)
    base = env.unwrapped
    obs, _ = env.reset(seed=seed)
    with viewer.launch_passive(base.model, base.data) as v:
        v.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        v.cam.trackbodyid = base.idx.torso_body
        v.cam.distance = 0.6
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total, done = 0.0, False
            while not done and v.is_running():
                tick = time.perf_counter()
                obs, reward, term, trunc, info = env.step(act(obs))
                total += reward
                done = term or trunc
                v.sync()
                time.sleep(max(0.0, base.dt - (time.perf_counter() - tick)))
            print(f"episode {ep}: return {total:.1f}, distance {info['forward_distance']:.2f} m, "
                  f"{'fell' if info['fell'] else 'upright'}")
            if not v.is_running():
                break
    env.close()


def record(sources: list[str], out: Path, episodes: int, seed: int, randomize: bool, allow_pickle: bool) -> None:
    from training.visualization import record_episode, side_by_side, write_mp4
    clips = []
    for src in sources:
        act, cfg, label = load_actor(src, allow_pickle)
        frames, fps = [], 25.0
        for ep in range(episodes):
            f, stats = record_episode(act, with_randomization(cfg, randomize), seed=seed + ep, title=label)
            frames += f
            fps = stats["fps"]
            print(f"{label} episode {ep}: return {stats['return']:.1f}, speed {stats['mean_forward_speed']:.3f} m/s, "
                  f"{'fell' if stats['fell'] else 'upright'}")
        clips.append(frames)
    frames = clips[0] if len(clips) == 1 else side_by_side(*clips)
    write_mp4(out, frames, fps)
    print(f"-> {out} ({len(frames) / fps:.1f} s at {fps:.0f} fps)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="SB3 .zip or BC .pth written by this project")
    src.add_argument("--gait", choices=["trot"], help="the hard-coded gait")
    src.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two models (or 'trot') side by side")
    ap.add_argument("--record", type=Path, help="write an mp4 instead of opening the viewer")
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-randomization", action="store_true")
    ap.add_argument("--allow-pickle", action="store_true")
    args = ap.parse_args(argv)
    if args.episodes < 1:
        ap.error("--episodes must be at least 1")
    sources = args.compare or [args.model or args.gait]
    try:
        if args.compare and not args.record:
            args.record = Path("compare.mp4")
        if args.record:
            if args.record.exists():
                raise PipelineError(f"{args.record} exists; choose another --record path")
            record(sources, args.record, args.episodes, args.seed, not args.no_randomization, args.allow_pickle)
            return 0
        if not has_display():
            raise PipelineError("no display for the interactive viewer; pass --record out.mp4 to write a video")
        act, cfg, _ = load_actor(sources[0], args.allow_pickle)
        interactive(act, with_randomization(cfg, not args.no_randomization), args.episodes, args.seed)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    sys.exit(main())
