"""`pidog sysid track VIDEO --log LOG`: the leg's joint angles in every frame of a phone video, on the log's
clock.

Each frame: OpenCV's ArUco detector finds the markers (training/sysid/markers.py). The body marker's
corners (their median over the video: the body does not move) define the measuring plane: an affine map
from the image to the marker's own axes (its right and down edges), which takes out the phone's roll and
tilt. The centres of the hip, knee and foot markers (the crossing of each marker's diagonals) in that plane
give the thigh and the shin, hence the model's joint angles (hip: the thigh's angle from straight down,
positive rearward; knee: the shin's angle below forward, less the hip's). A frame whose three leg markers
are not all found, or whose thigh is not about as long as the others, is marked untracked.

Synchronization: the chest strip lights magenta at each segment start. Its brightness (red and blue above
green) over the pixels that change most is thresholded half-way between dark and lit; the onsets
(interpolated between frames) are matched to the log's flash times and a line fitted through the matches
(the phone's frame rate against the robot's clock, and the offset). A video whose flashes do not match its
log is refused.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2

cv2.setNumThreads(1)                  # one thread per process: faster on a busy machine, and the bench runs processes side by side
import numpy as np

from pidog_env import robot
from training.common import PipelineError
from training.sysid import files, markers

FLASH_SCALE = 8                 # the flash map is the frame shrunk this many times
MATCH_TOLERANCE_S = 0.025       # a flash onset matches a log flash within this (after the offset)
MIN_MATCHED = 0.8               # of the log's flashes
MIN_TRACKED = 0.5               # of the frames while the log runs
CAPTURE_RATES = (120.0, 240.0, 480.0, 960.0)   # slow-motion videos often say 30 fps: tried when that fails


def side_of(leg: str) -> float:
    """+1 for a left leg (seen from the left, forward is the image's right), -1 for a right leg."""
    return 1.0 if robot.HIP_POSITIONS[leg][1] > 0 else -1.0


def centre(corners: np.ndarray) -> np.ndarray:
    """The crossing of a quadrilateral's diagonals (the square's centre under perspective)."""
    p0, p1, p2, p3 = corners
    d1, d2 = p2 - p0, p3 - p1
    den = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(den) < 1e-9:
        return corners.mean(axis=0)
    s = ((p1[0] - p0[0]) * d2[1] - (p1[1] - p0[1]) * d2[0]) / den
    return p0 + s * d1


def plane_map(body_corners: np.ndarray) -> np.ndarray:
    """The homography (3 x 3) from image pixels to the body marker's plane, in its axes (right, down), mm.
    Points of a parallel plane (the leg's) map to a uniformly scaled copy of themselves, so the angles
    between them are kept whatever the phone's tilt."""
    h = markers.SIZES_MM[markers.BODY] / 2
    dst = np.array([[-h, -h], [h, -h], [h, h], [-h, h]], dtype=np.float32)
    return cv2.getPerspectiveTransform(body_corners.astype(np.float32), dst).astype(np.float64)


def to_plane(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    v = H @ np.r_[p, 1.0]
    return v[:2] / v[2]


def _apply(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    v = pts @ H[:, :2].T + H[:, 2]
    return v[..., :2] / v[..., 2:3]


def _square_residuals(quads: np.ndarray) -> np.ndarray:
    """How far each quadrilateral (n x 4 x 2, corners clockwise from top-left as ArUco gives them, in the
    plane's right/down axes) is from a square, relative to its side."""
    s = np.roll(quads, -1, axis=1) - quads                          # the four sides
    rot = np.stack([-s[..., 1], s[..., 0]], axis=-1)                 # each side turned a right angle
    size = np.linalg.norm(s, axis=-1).mean(axis=1, keepdims=True)[..., None]
    return np.concatenate([(s[:, 1] - rot[:, 0]), (s[:, 2] - rot[:, 1]), (s[:, 3] - rot[:, 2])], axis=1) / size[:, 0]


def refine_plane_map(H0: np.ndarray, body: np.ndarray, quads: np.ndarray, iterations: int = 8) -> np.ndarray:
    """The measuring plane's map, corrected so that the leg markers seen still (`quads`, image pixels) come
    out square, as they are: the body marker alone is too small to fix the phone's tilt to a tenth of a
    degree across the whole leg. The correction (aspect, shear and the two perspective terms) keeps the
    body marker's axes (its corners stay an upright square)."""
    h = markers.SIZES_MM[markers.BODY] / 2

    def corrected(x: np.ndarray) -> np.ndarray:
        a, b, c, d = x
        return np.array([[1 + a, b, 0.0], [0.0, 1.0, 0.0], [c * 1e-3, d * 1e-3, 1.0]]) @ H0

    def residuals(x: np.ndarray) -> np.ndarray:
        H = corrected(x)
        q = _apply(H, quads)
        bq = _apply(H, body)
        # the body marker: square and upright (its top edge along the right axis), weighted as many markers
        top = bq[1] - bq[0]
        upright = np.array([top[1] / np.linalg.norm(top)]) * math.sqrt(len(quads))
        return np.concatenate([_square_residuals(q).ravel(), _square_residuals(bq[None]).ravel() * math.sqrt(len(quads)),
                               upright])

    x = np.zeros(4)
    for _ in range(iterations):
        r = residuals(x)
        J = np.stack([(residuals(x + e) - r) / 1e-6 for e in np.eye(4) * 1e-6], axis=1)
        step, *_ = np.linalg.lstsq(J, -r, rcond=None)
        x = x + step
        if np.abs(step).max() < 1e-7:
            break
    H = corrected(x)
    # keep the body marker's centre and size: rescale and shift to its target
    bq = _apply(H, body)
    s = (h * 2) / np.linalg.norm(bq[1] - bq[0])
    S = np.array([[s, 0, -s * bq.mean(0)[0]], [0, s, -s * bq.mean(0)[1]], [0, 0, 1.0]])
    return S @ H


def angles(points_mm: dict[int, np.ndarray], side: float) -> tuple[float, float, float]:
    """(hip, knee, thigh length in mm) from marker centres in the body marker's plane (right, down)."""
    hip, knee, foot = points_mm[markers.HIP], points_mm[markers.KNEE], points_mm[markers.FOOT]
    t, s = knee - hip, foot - knee
    t_fwd, t_down = side * t[0], t[1]
    s_fwd, s_down = side * s[0], s[1]
    q_hip = math.atan2(-t_fwd, t_down)
    q_knee = math.atan2(s_down, s_fwd) - q_hip
    q_knee = (q_knee + math.pi) % (2 * math.pi) - math.pi
    return q_hip, q_knee, math.hypot(*t)


def open_video(path: Path) -> tuple[cv2.VideoCapture, float, int]:
    if not Path(path).is_file():
        raise PipelineError(f"video {path} not found")
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok or frame is None:
        cap.release()
        raise PipelineError(f"{path} is not a video OpenCV can read")
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    if not (math.isfinite(fps) and fps > 0):
        cap.release()
        raise PipelineError(f"{path} has no frame rate; pass --fps")
    return cap, float(fps), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))


def detect(video: Path, progress=None) -> dict:
    """Pass over the video: every marker's corners per frame and the flash map's frames."""
    cap, fps, count = open_video(video)
    det = markers.detector()
    found: list[dict[int, np.ndarray]] = []
    flash: list[np.ndarray] = []
    size = None
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            size = frame.shape[1], frame.shape[0]
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            corners, ids, _ = det.detectMarkers(gray)
            here = {}
            if ids is not None:
                for c, i in zip(corners, ids.ravel()):
                    if int(i) in markers.SIZES_MM and int(i) not in here:
                        here[int(i)] = c.reshape(4, 2).astype(np.float64)
            found.append(here)
            small = cv2.resize(frame, (size[0] // FLASH_SCALE, size[1] // FLASH_SCALE), interpolation=cv2.INTER_AREA)
            b, g, r = cv2.split(small.astype(np.int16))
            flash.append(np.clip(np.minimum(r, b) - g, 0, 255).astype(np.uint8))
            if progress and len(found) % 2000 == 0:
                progress(len(found), count)
    finally:
        cap.release()
    if not found:
        raise PipelineError(f"{video} has no frames")
    return {"fps": fps, "size": size, "found": found, "flash": np.stack(flash)}


def still_markers(found: list[dict[int, np.ndarray]], most: int = 600) -> np.ndarray:
    """Corners (n x 4 x 2) of leg markers in frames where they moved less than half a pixel since the frame
    before (no motion blur), at most `most`, spread over the video."""
    quads = []
    for prev, here in zip(found, found[1:]):
        for m in (markers.HIP, markers.KNEE, markers.FOOT):
            if m in here and m in prev and np.abs(here[m] - prev[m]).max() < 0.5:
                quads.append(here[m])
    if not quads:
        return np.zeros((0, 4, 2))
    pick = np.linspace(0, len(quads) - 1, min(most, len(quads))).astype(int)
    return np.stack(quads)[pick]


def flash_onsets(flash: np.ndarray) -> np.ndarray:
    """Frame positions (fractional) where the strip lights up."""
    span = flash.max(axis=0).astype(np.float64) - flash.min(axis=0)
    if span.max() < 20:
        return np.zeros(0)
    mask = span >= 0.5 * span.max()
    s = flash[:, mask].mean(axis=1)
    lo, hi = np.percentile(s, 5), s.max()
    level = (s - lo) / max(hi - lo, 1e-9)
    up = np.nonzero((level[:-1] < 0.5) & (level[1:] >= 0.5))[0]
    frac = (0.5 - level[up]) / np.maximum(level[up + 1] - level[up], 1e-9)
    return up + frac


def synchronize(onset_s: np.ndarray, flash_t: np.ndarray) -> tuple[float, float, int, float] | None:
    """(scale, offset, matched, rms residual s) with video time = scale x log time + offset, or None."""
    best = None
    for b in {round(v - f, 4) for v in onset_s for f in flash_t}:
        d = np.abs(onset_s[None, :] - (flash_t[:, None] + b))
        j = d.argmin(axis=1)
        ok = d[np.arange(len(flash_t)), j] < MATCH_TOLERANCE_S
        key = (int(ok.sum()), -float(d[np.arange(len(flash_t)), j][ok].sum()))
        if best is None or key > best[0]:
            best = (key, b, j, ok)
    if best is None or best[0][0] < 3:
        return None
    _, b, j, ok = best
    f, v = flash_t[ok], onset_s[j[ok]]
    A = np.stack([f, np.ones_like(f)], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(A, v, rcond=None)
    resid = v - (scale * f + offset)
    return float(scale), float(offset), int(ok.sum()), float(np.sqrt(np.mean(resid**2)))


def track(video: Path, log_path: Path, out: Path, preview: Path | None, fps: float | None = None, say=print) -> dict:
    """Track, synchronize, write `out` (and the preview); returns the summary."""
    log = files.load_log(log_path)
    leg, side = log["meta"]["leg"], side_of(log["meta"]["leg"])
    say(f"tracking {video} ({leg}, {len(log['flash_t'])} flashes in the log)")
    d = detect(video, progress=lambda i, n: say(f"  frame {i} of {n}"))
    n = len(d["found"])
    body = [f[markers.BODY] for f in d["found"] if markers.BODY in f]
    legs_seen = sum(all(m in f for m in (markers.HIP, markers.KNEE, markers.FOOT)) for f in d["found"])
    if not body or legs_seen == 0:
        raise PipelineError(f"{video}: no markers found (the body marker in {len(body)} and the three leg markers in "
                            f"{legs_seen} of {n} frames); see docs/sysid.md for the marker sheet")
    body_corners = np.median(np.stack(body), axis=0)
    M = refine_plane_map(plane_map(body_corners), body_corners, still_markers(d["found"]))
    q = np.full((n, 2), np.nan)
    thigh = np.full(n, np.nan)
    for i, f in enumerate(d["found"]):
        if all(m in f for m in (markers.HIP, markers.KNEE, markers.FOOT)):
            pts = {m: to_plane(M, centre(f[m])) for m in (markers.HIP, markers.KNEE, markers.FOOT)}
            q[i, 0], q[i, 1], thigh[i] = angles(pts, side)
    typical = np.nanmedian(thigh)
    valid = np.isfinite(q).all(axis=1) & (np.abs(thigh / typical - 1) < 0.25)
    onsets = flash_onsets(d["flash"])
    sync, used, matched = None, None, 0
    for rate in [fps or d["fps"], *([] if fps else CAPTURE_RATES)]:
        sync = synchronize(onsets / rate, np.asarray(log["flash_t"]))
        matched = max(matched, sync[2] if sync else 0)
        if sync and sync[2] >= MIN_MATCHED * len(log["flash_t"]):
            used = rate
            break
    if used is None:
        raise PipelineError(f"the flashes in {video} do not match {log_path}: {len(onsets)} flashes seen, "
                            f"{matched} of the log's {len(log['flash_t'])} segment starts matched; is this the "
                            "video of that recording?")
    scale, offset, matched, rms = sync
    t_log = (np.arange(n) / used - offset) / scale
    running = (t_log >= log["t"][0]) & (t_log <= log["t"][-1])
    share = valid[running].mean() if running.any() else 0.0
    if share < MIN_TRACKED:
        raise PipelineError(f"{video}: the leg markers were tracked in only {share:.0%} of the frames while the log runs "
                            f"(at least {MIN_TRACKED:.0%} needed): light, focus, or the markers' placement")
    t_cmd, q_cmd = files.leg_commands(log)
    summary = {"video": str(video), "log": str(log_path), "leg": leg, "frames": n, "capture_fps": used,
               "container_fps": d["fps"], "tracked_fraction": round(float(share), 4), "flashes_seen": int(len(onsets)),
               "flashes_matched": matched, "flashes_in_log": int(len(log["flash_t"])), "clock_scale": scale,
               "offset_s": offset, "sync_rms_ms": round(1000 * rms, 3), "thigh_mm_in_plane": round(float(typical), 2)}
    if preview is not None:
        write_preview(video, preview, d, q, valid, t_log, M, say)
    try:
        files.save_npz(out, t_log=t_log, q=np.where(valid[:, None], q, 0.0), valid=valid, t=t_cmd, q_cmd=q_cmd,
                       segment=log["segment"], segment_kind=np.asarray(log["segment_kind"]), flash_t=log["flash_t"],
                       battery_v=log["battery_v"], meta=np.asarray(json.dumps({**log["meta"], **summary})))
    except BaseException:
        if preview is not None and preview.exists():
            preview.unlink()
        raise
    return summary


def write_preview(video: Path, preview: Path, d: dict, q: np.ndarray, valid: np.ndarray, t_log: np.ndarray,
                  M: np.ndarray, say) -> None:
    """The video (every second frame, half size) with the tracked leg and its angles drawn on it."""
    import imageio.v2 as imageio
    cap, _, _ = open_video(video)
    tmp = preview.with_name(f".{preview.name}.{os.getpid()}.tmp{preview.suffix}")
    writer = imageio.get_writer(str(tmp), fps=30, codec="libx264", quality=6, macro_block_size=8,
                                ffmpeg_log_level="error", output_params=["-preset", "ultrafast"])
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % 2 == 0:
                f = d["found"][i]
                for m, c in f.items():
                    cv2.polylines(frame, [np.round(c).astype(np.int32)], True, (0, 200, 255), 1, cv2.LINE_AA)
                if valid[i]:
                    pts = [tuple(np.round(centre(f[m])).astype(int)) for m in (markers.HIP, markers.KNEE, markers.FOOT)]
                    cv2.line(frame, pts[0], pts[1], (0, 255, 0), 2, cv2.LINE_AA)
                    cv2.line(frame, pts[1], pts[2], (0, 255, 0), 2, cv2.LINE_AA)
                    text = f"t {t_log[i]:7.3f} s  hip {math.degrees(q[i, 0]):6.1f}  knee {math.degrees(q[i, 1]):6.1f} deg"
                else:
                    text = f"t {t_log[i]:7.3f} s  not tracked"
                cv2.putText(frame, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(frame, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
                small = cv2.resize(frame, (frame.shape[1] // 2 // 8 * 8, frame.shape[0] // 2 // 8 * 8), interpolation=cv2.INTER_AREA)
                writer.append_data(small[..., ::-1])
            i += 1
        writer.close()
        os.replace(tmp, preview)
    finally:
        cap.release()
        if tmp.exists():
            writer.close()
            tmp.unlink()
