"""Seeing the dog learn: episode videos with an overlay, TensorBoard clips, the training dashboard, and
a live window that never blocks training.

* `rollout_states` runs one deterministic episode in its own env and keeps the joint positions of each
  video frame; `render_states` draws them; `record_episode` does both and returns RGB frames with step,
  forward speed and return drawn on them (command task: the commanded and the measured velocity as
  green and orange arrows, `command_panel`). Frames are rendered at 320x240 without shadows (shadows
  cost 3x per frame under software GL) and sub-sampled to `fps`; the video plays in real time.
* During training, `ClipRenderer` renders each clip in a separate, niced process
  (`python -m training.render_clip`) from the saved states, so training pays only for the rollout.
* `write_mp4` writes H.264 through imageio-ffmpeg (it ships its own ffmpeg).
* `log_video_to_tensorboard` adds the clip as an animated GIF image summary (TensorBoard's Images tab
  plays it); SB3/torch's own video logging needs moviepy, which this stack does not carry.
* `save_dashboard` draws evaluation return, forward speed, episode length and fall rate against env
  steps (and the BC validation loss when BC ran) into `plots/training_curves.png`.
* `LiveViewer` starts `python -m training.live_window` as a separate process that shows the newest
  clip and the dashboard in a GLFW window, so training never waits for the screen.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pidog_env import mjcf_names as names
from pidog_env.config import EnvConfig
from pidog_env.env import coarse_visual_copy, has_display
from pidog_env.evaluation import run_episode

VIDEO_SIZE = (240, 320)          # (height, width)
VIDEO_FPS = 25                   # sub-sampled from the 50 Hz control rate


def _overlay(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    import cv2
    out = frame.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 14 * len(lines) + 6), (0, 0, 0), thickness=-1)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (6, 15 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


PANEL = 70                       # side of the command panel (pixels), bottom-left of command-task clips
CMD_COLOR, MEASURED_COLOR = (60, 220, 60), (255, 150, 30)     # RGB


def command_panel(frame: np.ndarray, command: tuple[float, float], measured: tuple[float, float],
                  vx_full: float = 0.12, wz_full: float = 0.5) -> np.ndarray:
    """Draw the commanded (green) and measured (orange) velocity as arrows on `frame` (in place): up for
    forward speed vx, left for yaw rate wz (counter-clockwise), full length at `vx_full` / `wz_full`."""
    import cv2
    h = frame.shape[0]
    x0, y0 = 4, h - PANEL - 4
    cv2.rectangle(frame, (x0, y0), (x0 + PANEL, y0 + PANEL), (0, 0, 0), thickness=-1)
    cx, cy, r = x0 + PANEL // 2, y0 + PANEL // 2 + 6, PANEL // 2 - 10
    for (vx, wz), color, width in ((command, CMD_COLOR, 3), (measured, MEASURED_COLOR, 1)):
        tip_v = (cx, int(round(cy - r * float(np.clip(vx / vx_full, -1, 1)))))
        tip_w = (int(round(cx - r * float(np.clip(wz / wz_full, -1, 1)))), cy)
        for tip in (tip_v, tip_w):
            if tip != (cx, cy):
                cv2.arrowedLine(frame, (cx, cy), tip, color, width, cv2.LINE_AA, tipLength=0.3)
    cv2.putText(frame, "cmd", (x0 + 3, y0 + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, CMD_COLOR, 1, cv2.LINE_AA)
    cv2.putText(frame, "meas", (x0 + PANEL - 31, y0 + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, MEASURED_COLOR, 1,
                cv2.LINE_AA)
    return frame


def rollout_states(act: Callable[[Any], np.ndarray], env_cfg: EnvConfig, seed: int = 0, fps: int = VIDEO_FPS,
                   max_steps: int | None = None) -> dict[str, Any]:
    """One deterministic episode in a fresh env, kept as what a clip needs: the joint positions of every
    video frame (sub-sampled to `fps`) and the overlay's figures. Cheap: no rendering."""
    import gymnasium as gym

    import pidog_env
    env = gym.make(pidog_env.ENV_ID, config=env_cfg)
    base = env.unwrapped
    stride = max(1, int(round(1.0 / (base.dt * fps))))
    rows: dict[str, list] = {"qpos": [], "step": [], "speed": [], "return": [], "command": [], "measured": []}
    smooth = [0.0, 0.0]                                    # measured vx, wz over ~0.5 s (command task)

    def keep(step: int, obs: Any, info: dict, total: float) -> bool:
        if max_steps and step >= max_steps:
            return False
        if "vx" in info:
            smooth[0] += 0.04 * (info["vx"] - smooth[0])
            smooth[1] += 0.04 * (info["wz"] - smooth[1])
        if step % stride == 0:
            command = base.command
            rows["qpos"].append(base.data.qpos.copy())
            rows["step"].append(step)
            rows["speed"].append(info.get("forward_speed", 0.0))
            rows["return"].append(total)
            rows["command"].append(command if command is not None else (np.nan, np.nan))
            rows["measured"].append(tuple(smooth))
        return True

    try:
        ep = run_episode(act, env, seed, on_step=keep)
    finally:
        env.close()
    states: dict[str, Any] = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    states["stats"] = {"return": ep["return"], "length": ep["length"], "fell": ep["fell"],
                       "forward_distance": ep["forward_distance"], "mean_forward_speed": ep["mean_forward_speed"],
                       "fps": 1.0 / (base.dt * stride), "seconds": ep["length"] * base.dt, "dt": base.dt}
    return states


def render_states(states: dict[str, Any], env_cfg: EnvConfig, size: tuple[int, int] = VIDEO_SIZE,
                  title: str = "") -> list[np.ndarray]:
    """The clip's frames from `rollout_states`: the tracking camera with the overlay (and, in the command
    task, the commanded and measured velocity). Rendering needs only the joint positions."""
    import mujoco

    from pidog_env.model import load_model
    model = load_model(env_cfg.physical, env_cfg.sim_dt)
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(coarse_visual_copy(model, 12, 6), *size)     # cheap settings for video frames
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    c, dt = env_cfg.command, states["stats"]["dt"]
    frames = []
    try:
        for i, qpos in enumerate(states["qpos"]):
            data.qpos[:] = qpos
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=names.TRACK_CAMERA)
            step = int(states["step"][i])
            lines = [f"{title}  step {step}  t {step * dt:4.1f}s".strip(),
                     f"speed {states['speed'][i]:+.2f} m/s  return {states['return'][i]:7.1f}"]
            command, measured = states["command"][i], states["measured"][i]
            has_command = bool(np.isfinite(command).all())
            if has_command:
                lines.append(f"cmd vx {command[0]:+.2f} wz {command[1]:+.2f} | meas {measured[0]:+.2f} {measured[1]:+.2f}")
            image = _overlay(renderer.render(), lines)
            if has_command:
                command_panel(image, tuple(command), tuple(measured), max(map(abs, c.vx_range)) or 0.12,
                              max(map(abs, c.wz_range)) or 0.5)
            frames.append(image)
    finally:
        renderer.close()
    return frames


def record_episode(act: Callable[[Any], np.ndarray], env_cfg: EnvConfig, seed: int = 0, fps: int = VIDEO_FPS,
                   size: tuple[int, int] = VIDEO_SIZE, title: str = "", max_steps: int | None = None
                   ) -> tuple[list[np.ndarray], dict[str, float]]:
    """Frames (sub-sampled to `fps`) and figures of one deterministic episode in a fresh env."""
    states = rollout_states(act, env_cfg, seed, fps, max_steps)
    frames = render_states(states, env_cfg, size, title)
    return frames, {k: v for k, v in states["stats"].items() if k != "dt"}


def save_states(path: Path, states: dict[str, Any], env_cfg: EnvConfig, title: str) -> Path:
    """`rollout_states` as an npz for the clip renderer (no pickles: the config and figures as JSON)."""
    arrays = {k: v for k, v in states.items() if k != "stats"}
    meta = {"stats": states["stats"], "env_config": env_cfg.to_dict(), "title": title}
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def load_states(path: Path) -> tuple[dict[str, Any], EnvConfig, str]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        states: dict[str, Any] = {k: z[k] for k in z.files if k != "meta"}
    states["stats"] = meta["stats"]
    return states, EnvConfig.from_dict(meta["env_config"]), meta["title"]


def gif_bytes(frames: list[np.ndarray], fps: float, max_frames: int = 250, scale: int = 2) -> bytes:
    """An animated GIF (half size, at most `max_frames` frames) of a clip, for TensorBoard's Images tab."""
    from PIL import Image
    stride = max(1, int(np.ceil(len(frames) / max_frames)))
    small = [Image.fromarray(f[::scale, ::scale]) for f in frames[::stride]]
    buf = io.BytesIO()
    small[0].save(buf, format="GIF", save_all=True, append_images=small[1:],
                  duration=int(1000 * stride / fps), loop=0)
    return buf.getvalue()


def render_clip_file(states_path: Path, mp4: Path) -> Path:
    """What the background clip renderer does: states -> a GIF beside the mp4, then the mp4 (atomically)."""
    states, env_cfg, title = load_states(states_path)
    frames = render_states(states, env_cfg, title=title)
    fps = states["stats"]["fps"]
    mp4.with_suffix(".gif").write_bytes(gif_bytes(frames, fps))
    return write_mp4(mp4, frames, fps)


class ClipRenderer:
    """Renders clips in background processes (`python -m training.render_clip`, niced), so training pays
    only for the episode's rollout. `submit` starts one; `finished` returns the clips whose renderer
    exited since the last call; `wait` waits for the rest (end of training)."""

    def __init__(self, nice: int = 5) -> None:
        self.nice = nice
        self.pending: list[tuple[subprocess.Popen, Path, Path, int]] = []

    def submit(self, states_path: Path, mp4: Path, step: int) -> None:
        cmd = [sys.executable, "-m", "training.render_clip", str(states_path), str(mp4)]
        if self.nice and shutil.which("nice"):          # (not preexec_fn: unsafe in a threaded process)
            cmd = ["nice", "-n", str(self.nice), *cmd]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pending.append((proc, states_path, mp4, step))

    def finished(self) -> list[tuple[Path, int, str | None]]:
        """(mp4, step, error or None) of every clip whose renderer has exited."""
        done, still = [], []
        for item in self.pending:
            proc, states_path, mp4, step = item
            if proc.poll() is None:
                still.append(item)
                continue
            err = None
            if proc.returncode != 0:
                lines = proc.stderr.read().decode(errors="replace").strip().splitlines()
                err = lines[-1] if lines else f"exit code {proc.returncode}"
            proc.stderr.close()
            states_path.unlink(missing_ok=True)
            done.append((mp4, step, err))
        self.pending = still
        return done

    def wait(self, timeout: float = 300.0) -> list[tuple[Path, int, str | None]]:
        deadline = time.monotonic() + timeout
        for proc, *_ in self.pending:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return self.finished()


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    import imageio.v2 as imageio
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=8,
                            ffmpeg_log_level="error", pixelformat="yuv420p") as writer:
        for frame in frames:
            writer.append_data(frame)
    tmp.replace(path)
    return path


def side_by_side(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    """Pad the shorter clip with its last frame and put the two next to each other."""
    n = max(len(a), len(b))
    pad = (lambda f, i: f[min(i, len(f) - 1)])
    return [np.concatenate([pad(a, i), pad(b, i)], axis=1) for i in range(n)]


def log_video_to_tensorboard(writer, tag: str, frames: list[np.ndarray] | bytes, step: int, fps: float,
                             size: tuple[int, int] | None = None) -> None:
    """Animated GIF image summary on a torch SummaryWriter: from frames, or from a GIF already made
    (`size` = its (height, width))."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    if isinstance(frames, bytes):
        data, (h, w) = frames, size
    else:
        data, h, w = gif_bytes(frames, fps), frames[0].shape[0] // 2, frames[0].shape[1] // 2
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=data)
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    writer.flush()


def save_dashboard(path: Path, evaluations: list[dict], episodes: list[dict] | None = None,
                   bc_curve: list[dict] | None = None, title: str = "",
                   interventions: list[dict] | None = None) -> Path:
    """Training curves: eval return, forward speed, episode length and fall rate (+ BC validation MSE,
    + the intervention rate of a run with interventions)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("mean_return", "return"), ("mean_forward_speed", "forward speed (m/s)"),
              ("mean_length", "episode length (steps)"), ("fall_rate", "fall rate")]
    has_bc = bool(bc_curve) and any("val_mse" in r for r in bc_curve)
    extra = has_bc + bool(interventions)
    fig, axes = plt.subplots(1, len(panels) + extra, figsize=(4 * (len(panels) + extra), 3.2))
    steps = [e["timesteps"] for e in evaluations]
    for ax, (key, label) in zip(axes, panels):
        if episodes:
            ax.plot([e["timesteps"] for e in episodes], [e[key] for e in episodes], color="tab:gray",
                    alpha=0.5, lw=1, label="training episodes")
        if evaluations:
            ax.plot(steps, [e[key] for e in evaluations], "o-", color="tab:blue", ms=3, label="evaluation")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    if interventions:
        ax = axes[len(panels)]
        ax.plot([r["timesteps"] for r in interventions], [r["intervention_rate"] for r in interventions],
                color="tab:red")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("intervention rate (expert in control)", fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    if has_bc:
        rows = [r for r in bc_curve if "val_mse" in r]
        ax = axes[-1]
        ax.plot([r["epoch"] for r in rows], [r["val_mse"] for r in rows], color="tab:green")
        ax.set_yscale("log")
        ax.set_title("BC validation MSE", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


class LiveViewer:
    """A separate process (`python -m training.live_window`) showing the newest clip and dashboard."""

    def __init__(self, watch_dir: Path) -> None:
        self.proc: subprocess.Popen | None = None
        if not has_display():
            return
        env = {**os.environ}
        env.pop("MUJOCO_GL", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "training.live_window", str(watch_dir)],
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
            warnings.warn(f"live window could not open ({err[-1] if err else 'no message'}); continuing headless")
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
