"""Watching a policy walk (`pidog visualize`): MuJoCo's interactive viewer in real time, or a recorded video.

    pidog visualize --gait trot                        # interactive viewer (needs a display)
    pidog visualize --model outputs/<exp>/final_model.zip --record walk.mp4 --episodes 2
    pidog visualize --compare outputs/<exp>/bc_pretrained_policy.pth outputs/<exp>/final_model.zip \\
                                 --record bc_vs_ppo.mp4           # side by side in one video
    pidog visualize --model outputs/<exp>/best_model.zip --teleop  # a command-task policy, driven from the
                                 # keyboard in the viewer: arrows speed/turn, space stop (--gait trot too)

A model is an SB3 .zip written by this project or a BC .pth policy; "trot" stands for the gait anywhere
a model path is expected.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pidog_env.config import EnvConfig
from pidog_env.evaluation import run_episode
from training.common import make_env, with_randomization
from training.evaluation import policy_callable


# GLFW key codes (what MuJoCo's viewer passes to key_callback) -> command actions (deploy.commands)
VIEWER_KEYS = {265: "faster", 264: "slower", 263: "left", 262: "right", 32: "stop"}


def load_actor(source: str, allow_pickle: bool = False, command: bool = False
               ) -> tuple[Callable[[Any], np.ndarray], EnvConfig, str]:
    """(obs -> action, the env config it was trained on, a short label) for a model path or "trot"
    (`command`: the commanded trot)."""
    if source == "trot":
        from pidog_env import config_tree
        from pidog_env.gaits import TrotGait
        cfg = config_tree.apply(EnvConfig(), "command.enabled", True) if command else EnvConfig()
        return TrotGait.for_config(cfg), cfg, "trot"
    from training.policies import load_policy
    policy, meta = load_policy(source, allow_pickle=allow_pickle)
    label = Path(source).stem.replace("_pretrained_policy", "").replace("_model", "")
    return policy_callable(policy), meta.get("env_config_obj") or EnvConfig(), label


class ViewerTeleop:
    """Keyboard commands from MuJoCo's viewer window (its key callback), for command-task policies."""

    def __init__(self, cfg: EnvConfig) -> None:
        from deploy.commands import CommandSource
        self.source = CommandSource(cfg.command.vx_range, cfg.command.wz_range)

    def on_key(self, keycode: int) -> None:
        action = VIEWER_KEYS.get(keycode)
        if action is not None:
            self.source.press(action)
            vx, wz = self.source.command
            print(f"command: vx {vx:+.2f} m/s, wz {wz:+.2f} rad/s", flush=True)

    @property
    def command(self) -> tuple[float, float]:
        return self.source.command


def interactive(act, cfg: EnvConfig, episodes: int, seed: int, teleop: bool = False) -> None:
    """Real-time playback in MuJoCo's passive viewer with the tracking camera; `teleop`: the keyboard
    in the viewer sets the command (arrows: speed and turn, space: stop)."""
    import mujoco
    from mujoco import viewer
    env = make_env(cfg)
    base = env.unwrapped
    env.reset(seed=seed)
    keys = ViewerTeleop(cfg) if teleop else None
    if keys is not None:
        print("teleop: up/down faster/slower, left/right turn, space stop (keys go to the viewer window)")
    with viewer.launch_passive(base.model, base.data, key_callback=keys.on_key if keys else None) as v:
        v.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        v.cam.trackbodyid = base.idx.torso_body
        v.cam.distance = 0.6
        tick = time.perf_counter()

        def show(step: int, obs: Any, info: dict, total: float) -> bool:
            nonlocal tick
            if keys is not None:
                base.set_command(*keys.command)          # in the observation from the next step on
            v.sync()
            time.sleep(max(0.0, base.dt - (time.perf_counter() - tick)))
            tick = time.perf_counter()
            return v.is_running()

        for ep in range(episodes):
            result = run_episode(act, env, seed + ep, on_step=show)
            print(f"episode {ep}: return {result['return']:.1f}, distance {result['forward_distance']:.2f} m, "
                  f"{'fell' if result['fell'] else 'upright'}")
            if not v.is_running():
                break
    env.close()


def record(sources: list[str], out: Path, episodes: int, seed: int, randomize: bool, allow_pickle: bool) -> None:
    from training.visualization import record_episode, side_by_side, write_mp4
    clips = []
    actors = [load_actor(src, allow_pickle) for src in sources]        # every model checked before any rendering
    for act, cfg, label in actors:
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
