"""Live window: plays the newest episode clip of a run and shows its training dashboard.

    python -m training.live_window outputs/<experiment>

Started by training when a display is present (`--live`), as its own process so training never
waits for the screen. It watches `<experiment>/videos/step_*.mp4` and `<experiment>/plots/
training_curves.png`, plays each new clip in real time (then loops it) above the latest dashboard,
and exits when its window is closed or its parent training process ends. Uses GLFW (installed with
MuJoCo) and plain OpenGL pixel drawing: no GUI toolkit needed in the image.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from training.experiment import Experiment

WIDTH, VIDEO_H, DASH_H = 960, 540, 200


def _load_video(path: Path) -> tuple[list[np.ndarray], float]:
    import imageio.v2 as imageio
    reader = imageio.get_reader(path)
    fps = float(reader.get_meta_data().get("fps", 25.0))
    frames = [np.asarray(f) for f in reader]
    reader.close()
    return frames, fps


def _load_image(path: Path) -> np.ndarray | None:
    try:
        import imageio.v2 as imageio
        img = np.asarray(imageio.imread(path))
        return img[..., :3] if img.ndim == 3 else None
    except Exception:
        return None


def _draw(gl, img: np.ndarray, x: int, y_top: int, box_w: int, box_h: int, win_h: int) -> None:
    """Draw `img` scaled to fit (box_w, box_h) with its top-left at (x, y_top) in window coordinates."""
    h, w = img.shape[:2]
    gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)   # RGB rows are tightly packed (3 * width bytes)
    zoom = min(box_w / w, box_h / h)
    gl.glWindowPos2i(x, win_h - y_top)
    gl.glPixelZoom(zoom, -zoom)                 # negative y zoom: image rows go downwards
    # Raw bytes: PyOpenGL reinterprets numpy arrays by their shape, which scrambles RGB rows.
    gl.glDrawPixels(w, h, gl.GL_RGB, gl.GL_UNSIGNED_BYTE, np.ascontiguousarray(img, dtype=np.uint8).tobytes())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    exp = Path(argv[0])
    import glfw
    from OpenGL import GL as gl
    if not glfw.init():
        print("error: GLFW could not initialize (no display?)", file=sys.stderr)
        return 1
    window = glfw.create_window(WIDTH, VIDEO_H + DASH_H, f"PiDog training: {exp.name}", None, None)
    if not window:
        glfw.terminate()
        print("error: could not create a window", file=sys.stderr)
        return 1
    glfw.make_context_current(window)
    glfw.swap_interval(0)
    parent = os.getppid()
    clip, frames, fps, frame_i, next_frame = None, [], 25.0, 0, 0.0
    dash, dash_mtime, last_scan = None, 0.0, 0.0
    while not glfw.window_should_close(window):
        now = time.monotonic()
        if now - last_scan > 1.0:
            last_scan = now
            if os.getppid() != parent:             # the training process is gone
                break
            clips = Experiment.clips(exp)
            if clips and clips[-1] != clip:
                try:
                    frames, fps = _load_video(clips[-1])
                    clip, frame_i, next_frame = clips[-1], 0, now
                except Exception:
                    pass                            # still being written; try again next scan
            plot = exp / Experiment.DASHBOARD
            if plot.is_file() and plot.stat().st_mtime != dash_mtime:
                dash_mtime = plot.stat().st_mtime
                dash = _load_image(plot)
        width, height = glfw.get_framebuffer_size(window)
        gl.glViewport(0, 0, width, height)
        gl.glClearColor(0.12, 0.12, 0.14, 1.0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT)
        if frames:
            if now >= next_frame:
                frame_i = (frame_i + 1) % len(frames)
                next_frame = now + 1.0 / fps
            _draw(gl, frames[frame_i], 0, 0, width, height - DASH_H, height)
        if dash is not None:
            _draw(gl, dash, 0, height - DASH_H, width, DASH_H, height)
        glfw.swap_buffers(window)
        glfw.poll_events()
        time.sleep(0.01)
    glfw.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
