"""Videos, dashboard, TensorBoard clips and the live window (under Xvfb when it is installed)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait
from training.common import make_env
from training.visualization import record_episode, save_dashboard, write_mp4

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, str(ROOT / "train_pretrain_finetune.py"), "--skip-bc", "--total-rl-timesteps", "2048",
         "--n-envs", "2", "--visualize-freq", "1024", "--eval-freq", "1024", "--eval-episodes", "1",
         "--final-eval-episodes", "1", "--checkpoint-freq", "100000", "--set", "rl.confirm_episodes=1"]


def trot():
    env = make_env(EnvConfig())
    gait = TrotGait.for_env(env)
    env.close()
    return gait


@pytest.mark.slow
def test_video_plays_in_real_time(tmp_path):
    cfg = EnvConfig()
    frames, stats = record_episode(trot(), cfg, seed=0, max_steps=250)          # 5 s of simulated time
    path = write_mp4(tmp_path / "clip.mp4", frames, stats["fps"])
    reader = imageio.get_reader(path)
    meta = reader.get_meta_data()
    n = sum(1 for _ in reader)
    assert stats["seconds"] == pytest.approx(5.0)
    assert n / meta["fps"] == pytest.approx(stats["seconds"], rel=0.10)
    assert frames[0].std() > 10                                                  # a picture, not a blank


def test_dashboard_png_has_all_panels(tmp_path):
    evals = [{"timesteps": t, "mean_return": 100 + t / 100, "mean_forward_speed": 0.1, "mean_length": 900,
              "fall_rate": 0.1} for t in range(0, 50_000, 10_000)]
    path = save_dashboard(tmp_path / "plots" / "curves.png", evals, evals, [{"epoch": 1, "val_mse": 0.1},
                                                                            {"epoch": 2, "val_mse": 0.05}])
    img = imageio.imread(path)
    assert img.shape[1] > 4 * img.shape[0] and img.std() > 10                  # 5 panels side by side


def run_training(tmp_path, name, extra_env):
    env = {**os.environ, "MUJOCO_GL": "egl", **extra_env}
    return subprocess.run([*TRAIN, "--output-dir", str(tmp_path), "--experiment-name", name, *extra_env.get("_args", [])],
                          capture_output=True, text=True, timeout=600, env={k: v for k, v in env.items() if k != "_args"})


@pytest.mark.slow
def test_headless_training_writes_videos_dashboard_and_tensorboard_clips(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([*TRAIN, "--set", "env.episode_seconds=2", "--output-dir", str(tmp_path),
                           "--experiment-name", "viz"],                 # 2 s clips: 50 frames each
                          capture_output=True, text=True, timeout=600, env={**env, "MUJOCO_GL": "egl"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    exp = tmp_path / "viz"
    videos = sorted((exp / "videos").glob("step_*.mp4"))
    assert [v.name for v in videos] == ["step_1024.mp4", "step_2048.mp4"]
    for v in videos:
        reader = imageio.get_reader(v)
        frames = sum(1 for _ in reader)
        episode = json.loads(v.with_suffix(".json").read_text())
        assert frames >= 1 and episode["fps"] == 25 and reader.get_meta_data()["fps"] == 25     # real time
        # The clip lasts as long as the simulated episode (within 10 %, or one frame for short falls).
        assert abs(frames / reader.get_meta_data()["fps"] - episode["seconds"]) <= max(0.1 * episode["seconds"],
                                                                                      1 / episode["fps"])
    img = imageio.imread(exp / "plots" / "training_curves.png")
    assert img.size > 0 and img.std() > 5
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(next((exp / "tensorboard").iterdir())), size_guidance={"images": 0})
    ea.Reload()
    assert "visualization/episode" in ea.Tags()["images"]
    assert len(ea.Images("visualization/episode")) == 2
    assert "live window" not in proc.stderr                                     # no window attempted


def xvfb_screenshot(display: str) -> np.ndarray:
    """Root window of an X display as an RGB array (xwd's dump parsed here: no ImageMagick needed).

    Xvfb dumps LSB-first pixels of 4 bytes (B, G, R, pad) or, while a GL window is mapped, packed
    3-byte pixels (B, G, R) in padded rows; both carry the blue byte first."""
    raw = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True, timeout=30).stdout
    hdr = np.frombuffer(raw[:100], dtype=">u4")
    header_size, width, height, bpp, bpl, ncolors = (int(hdr[i]) for i in (0, 4, 5, 11, 12, 19))
    assert bpp in (24, 32) and hdr[7] == 0, f"unexpected xwd format: {bpp} bpp, byte order {hdr[7]}"
    start = header_size + 12 * ncolors
    rows = np.frombuffer(raw[start:start + bpl * height], dtype=np.uint8).reshape(height, bpl)
    step = bpp // 8
    pixels = rows[:, :width * step].reshape(height, width, step)
    return pixels[..., [2, 1, 0]].copy()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xwd") is None,
                    reason="needs Xvfb and xwd (.ci/run installs them)")
def test_live_window_opens_under_xvfb(tmp_path):
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        before = xvfb_screenshot(display)
        env = {**os.environ, "MUJOCO_GL": "egl", "DISPLAY": display, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([*TRAIN, "--total-rl-timesteps", "4096", "--set", "env.episode_seconds=4",
                                 "--output-dir", str(tmp_path), "--experiment-name", "live", "--live"],
                                env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        shot = None
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if list((tmp_path / "live" / "videos").glob("step_*.mp4")):
                time.sleep(4)                                  # let the window pick the clip up and draw
                shot = xvfb_screenshot(display)
                break
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, out[-2000:]
        assert shot is not None, "no clip was written while training ran"
        assert before.std() < 1.0                               # the empty screen is blank ...
        assert shot.std() > 10 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50   # ... the window is not
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def torso_in_track_camera(env, size=(240, 320)) -> tuple[float, float]:
    """Where the torso appears in the tracking camera's image, as fractions of its width and height."""
    from pidog_env import mjcf_names as names
    m, d = env.model, env.data
    cam = m.camera(names.TRACK_CAMERA).id
    h, w = size
    rot, pos = d.cam_xmat[cam].reshape(3, 3), d.cam_xpos[cam]
    x, y, z = rot.T @ (d.xpos[env.idx.torso_body] - pos)          # camera frame: x right, y up, looking along -z
    f = 0.5 * h / np.tan(np.deg2rad(m.cam_fovy[cam]) / 2)
    return (w / 2 + f * x / -z) / w, (h / 2 - f * y / -z) / h


def test_the_tracking_camera_keeps_the_walking_dog_in_the_middle_of_the_frame():
    # Randomized masses once left MuJoCo's subtree masses stale, and the camera, which follows the robot's
    # centre of mass, drifted off the dog in proportion to the distance walked (seeds 0 and 1 left the frame).
    env = make_env(EnvConfig()).unwrapped
    gait = TrotGait.for_env(env)
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        walked = 0.0
        for _ in range(env.cfg.episode_steps):
            obs, _, terminated, truncated, info = env.step(gait(obs))
            u, v = torso_in_track_camera(env)
            assert 0.2 <= u <= 0.8 and 0.2 <= v <= 0.8, (seed, u, v, info["forward_distance"])
            walked = info["forward_distance"]
            if terminated or truncated:
                break
        assert walked > 1.5                               # a real 20 s walk, not a dog standing still


@pytest.mark.slow
def test_clips_render_in_a_background_process_from_the_recorded_states(tmp_path):
    from training.visualization import ClipRenderer, render_states, rollout_states, save_states
    cfg = EnvConfig()
    states = rollout_states(TrotGait.for_config(cfg), cfg, seed=0, fps=10, max_steps=50)
    assert states["qpos"].shape == (10, 19) and states["stats"]["fps"] == 10
    renderer = ClipRenderer()
    renderer.submit(save_states(tmp_path / "a.states.npz", states, cfg, "bench"), tmp_path / "a.mp4", 50)
    (tmp_path / "bad.states.npz").write_bytes(b"not an npz")
    renderer.submit(tmp_path / "bad.states.npz", tmp_path / "bad.mp4", 60)
    done = {mp4.name: (step, err) for mp4, step, err in renderer.wait(timeout=120)}
    assert done["a.mp4"] == (50, None) and done["bad.mp4"][1]             # the broken one is reported
    assert not (tmp_path / "bad.mp4").exists() and not renderer.pending
    frames = [f for f in imageio.get_reader(tmp_path / "a.mp4")]          # (list() asks its len: inf)
    assert len(frames) == 10 and (tmp_path / "a.gif").is_file()
    assert not (tmp_path / "a.states.npz").exists()                         # consumed
    # the background clip shows what rendering in-process shows
    direct = render_states(states, cfg, title="bench")
    assert np.abs(frames[5].astype(int) - direct[5].astype(int)).mean() < 8     # H.264 loses a little
