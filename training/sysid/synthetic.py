"""Synthetic recordings with known servo parameters: a command log as the robot writes it and a phone-like
video of the hanging leg with the markers on it and the chest strip's flashes, rendered from the leg model.

The video: the body welded, the leg simulated with the given parameters on the log's (jittered) command
times; a pinhole camera 0.2 m from the leg, slightly rolled, pitched and yawed; each frame the average of
sub-frame renders over its exposure (motion blur), a defocus blur, sensor noise and the encoder's loss;
the frames' true capture times jitter, their clock drifts, and the video starts at an offset the log does
not know. Figures of these choices are in `RenderSettings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2

cv2.setNumThreads(1)                  # one thread per process: faster on a busy machine, and the bench runs processes side by side
import numpy as np

from deploy import sysid as recorder
from pidog_env import robot
from training.sysid import markers
from training.sysid.leg import BODY_HEIGHT, LegParams, LegSimulator, sample

TORSO_HALF = (0.080, 0.038, 0.022)        # pidog.xml's torso box (half sizes), centred 12 mm above the hip plane
TORSO_Z = 0.012
THIGH_R, SHIN_R, FOOT_R = 0.0065, 0.005, 0.006


@dataclass(frozen=True)
class RenderSettings:
    width: int = 640
    height: int = 480
    focal_px: float = 520.0
    distance: float = 0.20               # m from the leg's plane
    aim_below_hip: float = 0.045         # m: the camera aims this far below the hip
    roll_deg: float = 3.0                # the phone's misalignment
    pitch_deg: float = -5.0
    yaw_deg: float = 6.0
    fps: float = 240.0
    exposure: float = 0.5 / 240          # s
    subframes: int = 3                   # motion blur samples per frame
    jitter_s: float = 0.0003             # frame capture time jitter (standard deviation)
    drift_ppm: float = 40.0              # the phone's clock against the robot's
    offset_s: float = -0.83              # the video starts this long before the log's first tick
    tail_s: float = 0.5                  # and ends this long after its last
    noise: float = 4.0                   # sensor noise, standard deviation in 8-bit levels
    defocus_px: float = 0.7              # Gaussian blur sigma
    tick_jitter_s: float = 0.0004        # the robot's 50 Hz ticks jitter this much
    led_latency_s: float = 0.0005        # the strip lights this long before its write returns


def synthetic_log(leg: str, quick: bool, rng: np.random.Generator, tick_jitter_s: float) -> dict:
    """A log as `deploy.sysid` writes it, of the protocol at 50 Hz with jittered tick times."""
    plan = recorder.build_plan(leg, quick)
    commands, segment = recorder.plan_commands(leg, plan)
    t = np.arange(len(commands)) * recorder.DT + rng.normal(0.0, tick_jitter_s, len(commands))
    t = np.maximum.accumulate(t - t[0])
    starts = np.r_[0, np.nonzero(np.diff(segment))[0] + 1]
    flash_t = t[starts] - 0.0002                       # the strip's write returns just before the servo write
    bt = t[24::25]
    return {"t": t, "command_deg": commands, "segment": segment, "segment_kind": [s.kind for s in plan],
            "flash_t": flash_t, "battery_t": bt, "battery_v": 7.9 - 0.002 * bt,
            "meta": {"leg": leg, "rate_hz": recorder.RATE_HZ, "flash_rgb": list(recorder.FLASH_RGB),
                     "flash_ticks": recorder.FLASH_TICKS, "quick": quick, "dry_run": False, "hardware": "synthetic"}}


def write_log(path: Path, log: dict) -> None:
    recorder.save_log(path, log["t"], log["command_deg"], log["segment"], log["segment_kind"], log["flash_t"],
                      log["battery_t"], log["battery_v"], log["meta"])


def leg_commands(log: dict) -> tuple[np.ndarray, np.ndarray]:
    """(tick times, the leg's hip and knee commands in model radians) of a log."""
    i = robot.LEGS.index(log["meta"]["leg"])
    return log["t"], np.deg2rad(log["command_deg"][:, 2 * i:2 * i + 2] * robot.LEG_SIGNS[2 * i:2 * i + 2])


def simulate_truth(log: dict, params: LegParams, t_query: np.ndarray) -> np.ndarray:
    t, q = leg_commands(log)
    sim = LegSimulator(log["meta"]["leg"], t, q, t[-1] + 1.0)
    times, traj = sim.run([params])
    return sample(times, traj[0], np.clip(t_query, 0.0, None))


# ---------------------------------------------------------------- the camera and the scene
def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


@dataclass
class Scene:
    leg: str
    settings: RenderSettings
    rng: np.random.Generator
    R: np.ndarray = field(init=False)            # world -> camera rotation (camera x right, y down, z forward)
    C: np.ndarray = field(init=False)            # camera centre in the world

    def __post_init__(self) -> None:
        s = self.settings
        self.side = 1.0 if robot.HIP_POSITIONS[self.leg][1] > 0 else -1.0
        self.hip = robot.HIP_POSITIONS[self.leg] + np.array([0.0, 0.0, BODY_HEIGHT])
        self.front = robot.HIP_POSITIONS[self.leg][0] > 0
        # Looking at the leg's side from outside: image right = forward on the left side, rearward on the right.
        right = np.array([self.side, 0.0, 0.0])
        down = np.array([0.0, 0.0, -1.0])
        forward = np.cross(down, right)                  # camera z: into the scene
        base = np.stack([right, down, forward])
        tilt = _rot("z", s.roll_deg) @ _rot("x", s.pitch_deg) @ _rot("y", s.yaw_deg)
        self.R = tilt @ base
        look_at = self.hip + np.array([0.0, 0.0, -s.aim_below_hip])
        self.C = look_at - self.R[2] * s.distance
        self.K = np.array([[s.focal_px, 0, s.width / 2], [0, s.focal_px, s.height / 2], [0, 0, 1]])
        self.y_leg = self.side * (abs(self.hip[1]) + 0.012)          # the leg markers' plane (outside the leg)
        self.y_body = self.side * (TORSO_HALF[1] + 0.001)
        bx = self.hip[0] + (-0.036 if self.front else 0.036)
        self.body_centre = np.array([bx, self.y_body, BODY_HEIGHT + TORSO_Z])
        self.background = self._background()
        # printed markers are a little grey on white paper
        self.images = {m: cv2.cvtColor((markers.with_quiet_zone(m, 120)[0] * 0.9 + 15).astype(np.uint8), cv2.COLOR_GRAY2BGR)
                       for m in markers.SIZES_MM}
        self.base: np.ndarray | None = None

    def project(self, p: np.ndarray) -> np.ndarray:
        cam = (np.asarray(p) - self.C) @ self.R.T
        uv = cam @ self.K.T
        return uv[..., :2] / uv[..., 2:3]

    def _background(self) -> np.ndarray:
        s = self.settings
        noise = self.rng.normal(0, 1, (s.height // 16 + 1, s.width // 16 + 1, 3)).astype(np.float32)
        tex = cv2.resize(noise, (s.width, s.height), interpolation=cv2.INTER_CUBIC)
        grad = np.linspace(150, 110, s.height, dtype=np.float32)[:, None, None]
        bg = np.clip(grad + 12 * tex * np.array([1.0, 0.9, 0.8], np.float32), 0, 255)
        return bg

    # ---------------------------------------------------------------- geometry of the leg
    def joints(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hip, knee = float(q[0]), float(q[1])
        k = self.hip + robot.THIGH_LENGTH * np.array([-math.sin(hip), 0.0, -math.cos(hip)])
        f = k + robot.SHIN_LENGTH * np.array([math.cos(hip + knee), 0.0, -math.sin(hip + knee)])
        return self.hip.copy(), k, f

    def _marker_corners(self, marker_id: int, centre: np.ndarray, angle: float, y: float) -> np.ndarray:
        """Image corners (with the quiet zone) of a marker at `centre` (x, z), rotated `angle` about the hinge
        axis with the link, in the plane y."""
        half = (markers.SIZES_MM[marker_id] / 2 + markers.QUIET_MM) / 1000.0
        # Upright, the marker's right points to the image right (forward x side) and its top up.
        # (the link's rotation about +y; seen from the right side, the marker's right points rearward)
        right = np.array([math.cos(angle), 0.0, -math.sin(angle)]) * self.side
        up = np.array([math.sin(angle), 0.0, math.cos(angle)])
        c = np.array([centre[0], y, centre[2]])
        pts = [c - half * right + half * up, c + half * right + half * up, c + half * right - half * up,
               c - half * right - half * up]
        return self.project(np.stack(pts))

    def _paste(self, img: np.ndarray, marker_id: int, corners: np.ndarray) -> None:
        """The marker (with its white margin) warped onto `img` at the image corners, in place."""
        src_img = self.images[marker_id]
        n = src_img.shape[0]
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
        H, W = img.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        if x1 <= x0 or y1 <= y0:
            return
        src = np.array([[0, 0], [n, 0], [n, n], [0, n]], dtype=np.float32)
        M = cv2.getPerspectiveTransform(src, (corners - [x0, y0]).astype(np.float32))
        roi = img[y0:y1, x0:x1]
        cv2.warpPerspective(src_img, M, (x1 - x0, y1 - y0), dst=roi, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)

    def _base(self) -> np.ndarray:
        """What does not move: the background, the torso's side face and the body marker (uint8 BGR)."""
        img = self.background.astype(np.uint8)
        hx, hy, hz = TORSO_HALF
        face = [np.array([x, self.y_body, BODY_HEIGHT + TORSO_Z + z]) for x, z in ((-hx, hz), (hx, hz), (hx, -hz), (-hx, -hz))]
        cv2.fillConvexPoly(img, np.round(self.project(np.stack(face)) * 16).astype(np.int32), (205, 205, 210),
                           lineType=cv2.LINE_AA, shift=4)
        self._paste(img, markers.BODY, self._marker_corners(markers.BODY, self.body_centre, 0.0, self.y_body + self.side * 0.0005))
        return img

    def draw(self, q: np.ndarray, led: float) -> np.ndarray:
        """One sharp render (uint8 BGR) of the leg at joint angles q with the strip lit `led` (0-1)."""
        if self.base is None:
            self.base = self._base()
        img = self.base.copy()
        hx, hy, hz = TORSO_HALF
        strip = [np.array([x, self.y_body, BODY_HEIGHT + TORSO_Z + z]) for x, z in
                 ((hx - 0.022, hz - 0.003), (hx - 0.002, hz - 0.003), (hx - 0.002, hz - 0.009), (hx - 0.022, hz - 0.009))]
        colour = (1 - led) * np.array([60, 60, 60]) + led * np.array([255, 40, 255])
        cv2.fillConvexPoly(img, np.round(self.project(np.stack(strip)) * 16).astype(np.int32), colour.tolist(),
                           lineType=cv2.LINE_AA, shift=4)
        h, k, f = self.joints(q)
        scale = self.settings.focal_px / self.settings.distance
        for a, b, r, col in ((h, k, THIGH_R, (217, 115, 64)), (k, f, SHIN_R, (225, 217, 217))):
            pa, pb = self.project(np.stack([a + [0, self.side * 0.006, 0], b + [0, self.side * 0.006, 0]]))
            cv2.line(img, tuple(np.round(pa * 16).astype(int)), tuple(np.round(pb * 16).astype(int)), col,
                     max(1, int(round(2 * r * scale))), lineType=cv2.LINE_AA, shift=4)
        hip, knee = float(q[0]), float(q[1])
        self._paste(img, markers.HIP, self._marker_corners(markers.HIP, h, hip, self.y_leg))
        # all three flat in one plane, painted in order (a marker can cover the one before it)
        self._paste(img, markers.KNEE, self._marker_corners(markers.KNEE, k, hip + knee, self.y_leg))
        self._paste(img, markers.FOOT, self._marker_corners(markers.FOOT, f, hip + knee, self.y_leg))
        return img


def render(video: Path, log: dict, params: LegParams, settings: RenderSettings = RenderSettings(), seed: int = 0,
           progress=None) -> dict:
    """Write the synthetic video of `log` played on a leg with `params`; returns the truth: each frame's
    capture time on the log's clock and the leg's true angles then (model radians)."""
    import imageio.v2 as imageio
    rng = np.random.default_rng(seed)
    s = settings
    scene = Scene(log["meta"]["leg"], s, rng)
    t_end = log["t"][-1] + s.tail_s
    n = int((t_end - s.offset_s) * s.fps)
    t_frame = s.offset_s + np.arange(n) / s.fps * (1 + 1e-6 * s.drift_ppm) + rng.normal(0, s.jitter_s, n)
    offsets = (np.arange(s.subframes) / max(1, s.subframes - 1) - 0.5) * s.exposure if s.subframes > 1 else np.zeros(1)
    t_sub = (t_frame[:, None] + offsets).ravel()
    q_sub = simulate_truth(log, params, t_sub).reshape(n, s.subframes, 2)
    q_true = simulate_truth(log, params, t_frame)
    on = np.asarray(log["flash_t"]) - s.led_latency_s
    off = on + recorder.FLASH_TICKS * recorder.DT
    # sensor noise: a bank of noise images, its positive and negative parts added and subtracted (saturating)
    noise = rng.normal(0, s.noise, (8, s.height, s.width, 3)) if s.noise > 0 else None
    bank = None if noise is None else (np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8))
    writer = imageio.get_writer(str(video), fps=s.fps, codec="libx264", quality=None, macro_block_size=8,
                                ffmpeg_log_level="error", output_params=["-preset", "ultrafast", "-crf", "20"])
    try:
        for i in range(n):
            lo, hi = t_frame[i] - s.exposure / 2, t_frame[i] + s.exposure / 2
            lit = float(np.clip(np.minimum(off, hi) - np.maximum(on, lo), 0, None).sum() / s.exposure)
            frame = scene.draw(q_sub[i, 0], lit)
            for j in range(1, s.subframes):
                frame = cv2.addWeighted(frame, j / (j + 1), scene.draw(q_sub[i, j], lit), 1 / (j + 1), 0)
            if s.defocus_px > 0:
                frame = cv2.GaussianBlur(frame, (0, 0), s.defocus_px)
            if bank is not None:
                k = rng.integers(len(bank[0]))
                frame = cv2.subtract(cv2.add(frame, bank[0][k]), bank[1][k])
            writer.append_data(frame[..., ::-1])
            if progress and i % 1000 == 0:
                progress(i, n)
    finally:
        writer.close()
    return {"t_frame": t_frame, "q": q_true, "fps": s.fps}
