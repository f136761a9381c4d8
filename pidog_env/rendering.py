"""Rendering for PiDog-v2: `rgb_array` frames from the tracking camera, the `human` viewer and the head
camera image (`use_camera`), each made on first use (`Renderers`); and the helpers the training tools share
(`has_display`, `coarse_visual_copy`, `follow_body`)."""

from __future__ import annotations

import copy
import os
import sys
import warnings
from typing import Callable

import mujoco
import numpy as np

from pidog_env import mjcf_names as names

VIEWER_DISTANCE = 0.6          # m from the tracked body, the viewer's camera
# The head camera's primitive tessellation (slices, stacks): coarse, since 48x48 pixels do not show it.
HEAD_CAMERA_TESSELLATION = (8, 4)


def has_display() -> bool:
    """True where a window can open (an X11/Wayland display on Linux; assumed elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def follow_body(cam: mujoco.MjvCamera, body: int) -> None:
    """Make a viewer's camera track `body` (the torso) from `VIEWER_DISTANCE`."""
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid = body
    cam.distance = VIEWER_DISTANCE


def coarse_visual_copy(model: mujoco.MjModel, slices: int, stacks: int) -> mujoco.MjModel:
    """A shallow model copy whose primitives are tessellated coarsely (visual settings only), for cheap
    offscreen rendering under software GL; physics and geometry are untouched."""
    coarse = copy.copy(model)
    coarse.vis.quality.numslices, coarse.vis.quality.numstacks, coarse.vis.quality.numquads = slices, stacks, 1
    return coarse


class Renderers:
    """One env's renderers of its model and data (both are updated in place, never replaced)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, render_size: tuple[int, int],
                 camera_size: int, track_body: int) -> None:
        self.model, self.data = model, data
        self.render_size, self.camera_size, self.track_body = render_size, camera_size, track_body
        self._frames: mujoco.Renderer | None = None
        self._head: mujoco.Renderer | None = None
        self._viewer = None
        self._warned_no_display = False

    def frame(self) -> np.ndarray:
        """The tracking camera's RGB frame (height x width x 3, `render_size`)."""
        if self._frames is None:
            h, w = self.render_size
            self._frames = mujoco.Renderer(self.model, h, w)
        self._frames.update_scene(self.data, camera=names.TRACK_CAMERA)
        return self._frames.render()

    def show(self, key_callback: Callable[[int], None] | None) -> None:
        """Sync the passive viewer, opened on first use with `key_callback` for its key presses; without a
        display, warn once and show nothing."""
        if self._viewer is None:
            if not has_display():
                if not self._warned_no_display:
                    warnings.warn("render_mode='human' needs a display (DISPLAY is unset); no window "
                                  "is shown. Use render_mode='rgb_array' on headless machines.")
                    self._warned_no_display = True
                return
            from mujoco import viewer
            self._viewer = viewer.launch_passive(self.model, self.data, key_callback=key_callback)
            follow_body(self._viewer.cam, self.track_body)
        if self._viewer.is_running():
            self._viewer.sync()

    def head_camera(self) -> np.ndarray:
        """The head camera's RGB image, channels first (3 x S x S, as SB3's CNNs take it), rendered cheaply.

        No shadows, reflections, skybox or haze, and coarse primitive tessellation (a visual-only copy
        of the model): 48x48 pixels do not show the difference, and software GL renders 1.4x faster.
        """
        if self._head is None:
            s = self.camera_size
            self._head = mujoco.Renderer(coarse_visual_copy(self.model, *HEAD_CAMERA_TESSELLATION), s, s)
            flags = self._head.scene.flags
            for f in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                      mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_HAZE):
                flags[f] = False
        self._head.update_scene(self.data, camera=names.HEAD_CAMERA)
        return np.ascontiguousarray(self._head.render().transpose(2, 0, 1))

    def close(self) -> None:
        for r in (self._frames, self._head):
            if r is not None:
                r.close()
        self._frames = self._head = None
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
