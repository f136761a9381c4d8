"""`pidog sysid protocol --out DIR`: the printable marker sheet (PNG, and a PDF at true scale), a picture of
where the markers go, and the steps of identifying a robot's servos with a phone."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from pidog_env import robot
from training.common import PipelineError
from training.sysid import markers

DPI = 300
A4_MM = (210.0, 297.0)
FILES = ("markers.png", "markers.pdf", "placement.png", "protocol.md")

STEPS = """\
# Identify your PiDog's servos with a phone

1. Weigh the robot (kitchen scale, battery in) and note the mass: `--set env.physical.total_mass=KG` when you train.
2. Print `markers.pdf` at 100 % ("actual size", no "fit to page"). Measure the 50 mm bar: it must be 50 mm.
   Cut the markers out along their outer lines, keeping the white margin.
3. Put the robot on a stand (a box or a mug under its belly) so that the leg you measure ({leg}) hangs free
   and touches nothing in its whole range. Keep the robot level: the runtime checks its IMU at start-up.
4. Stick the markers on the {side} side, all facing outwards, flat (see `placement.png`):
   - marker 0 (body, 30 mm) on the body beside the leg, upright (its top edge up), next to the hip;
   - marker 1 (hip axis, 16 mm) centred on the hip servo's axis (the screw of the horn);
   - marker 2 (knee axis, 16 mm) centred on the knee's axis;
   - marker 3 (foot, 16 mm) at the tip of the foot.
   The leg markers may sit at any rotation; their centres must be on the axes.
5. Set the phone on a steady support {distance} from the leg, its screen parallel to the leg, the whole
   leg's range and the chest light strip in view; slow motion at 120-240 fps; plenty of light (a lamp:
   a short exposure keeps the markers sharp). Start filming.
6. On the robot: `python -m deploy.sysid record --leg {leg} --out {leg}.npz` (about 45 s; Ctrl-C lies the
   robot down). The chest strip flashes magenta at the start of each of the protocol's segments: the
   video is synchronized to the log by these flashes. Stop filming after the robot has laid down.
7. Copy `{leg}.npz` and the video to this computer, then:
   `pidog sysid track VIDEO --log {leg}.npz --out track.npz` (check `preview.mp4`: the green lines must
   follow the leg) and `pidog sysid fit track.npz --out identified/`.
8. Train on your robot: `pidog train --actuator identified/actuator.json` (its "settings": the servo
   values of `robot.PhysicalParams` it identified).
"""


def sheet() -> np.ndarray:
    """The A4 marker sheet at DPI (uint8 grayscale): two of each marker with its label, cut lines and a
    50 mm bar to check the print's scale."""
    px = DPI / 25.4
    w, h = int(round(A4_MM[0] * px)), int(round(A4_MM[1] * px))
    page = np.full((h, w), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(page, "PiDog servo identification markers (OpenCV ArUco 4x4_50): print at 100 %", (int(15 * px), int(18 * px)),
                font, 1.4, 0, 3, cv2.LINE_AA)
    y = 30.0
    for marker_id in (markers.BODY, markers.HIP, markers.KNEE, markers.FOOT):
        size = markers.SIZES_MM[marker_id]
        for copy in range(2):
            x = 20.0 + copy * 95.0
            side = size + 2 * markers.QUIET_MM
            n = int(round(size * px))
            img = markers.marker_image(marker_id, n)
            x0, y0 = int(round((x + markers.QUIET_MM) * px)), int(round((y + markers.QUIET_MM) * px))
            page[y0:y0 + n, x0:x0 + n] = img
            cv2.rectangle(page, (int(round(x * px)), int(round(y * px))),
                          (int(round((x + side) * px)), int(round((y + side) * px))), 160, 2)
            cv2.putText(page, f"{marker_id}: {markers.NAMES[marker_id]} ({size:.0f} mm)",
                        (int(round((x + side + 4) * px)), int(round((y + side / 2 + 2) * px))), font, 1.1, 0, 2, cv2.LINE_AA)
        y += size + 2 * markers.QUIET_MM + 14
    x0, x1, yb = int(round(20 * px)), int(round(70 * px)), int(round((y + 10) * px))
    cv2.rectangle(page, (x0, yb), (x1, yb + int(3 * px)), 0, -1)
    cv2.putText(page, "50 mm: check the print's scale", (x1 + int(4 * px), yb + int(3 * px)), font, 1.1, 0, 2, cv2.LINE_AA)
    return page


def write_pdf(page: np.ndarray, path: Path) -> None:
    """The sheet as a one-page A4 PDF at true scale (the image fills the page exactly)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(A4_MM[0] / 25.4, A4_MM[1] / 25.4))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(page, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    ax.axis("off")
    fig.savefig(path, format="pdf", dpi=DPI)
    plt.close(fig)


def _label(img: np.ndarray, text: str, at: tuple[int, int], colour=(0, 0, 160)) -> None:
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.6
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    x, y = at
    cv2.rectangle(img, (x - 4, y - h - 5), (x + w + 4, y + base + 2), (255, 255, 255), -1)
    cv2.putText(img, text, (x, y), font, scale, colour, 1, cv2.LINE_AA)


def placement(leg: str = "LF") -> np.ndarray:
    """A picture of the markers on the hanging leg (the synthetic recording's renderer), labelled (BGR)."""
    from training.sysid.synthetic import RenderSettings, Scene
    s = RenderSettings(width=800, height=600, focal_px=700.0, aim_below_hip=0.03, roll_deg=0.0, pitch_deg=0.0, yaw_deg=0.0)
    scene = Scene(leg, s, np.random.default_rng(0))
    q = np.deg2rad([30.0, 25.0])
    img = scene.draw(q, 1.0)
    h, k, f = scene.joints(q)
    right = 1 if scene.side > 0 else -1
    spots = {markers.BODY: (scene.body_centre, (-250, 75)), markers.HIP: (h, (60, -40)),
             markers.KNEE: (k, (70, 10)), markers.FOOT: (f, (60, 30))}
    for marker_id, (where, (dx, dy)) in spots.items():
        p = scene.project(np.array([where[0], scene.y_leg, where[2]])).astype(int)
        anchor = (int(p[0] + dx * right) - (0 if right > 0 or dx < 0 else 150), int(p[1] + dy))
        cv2.line(img, tuple(p), anchor, (0, 0, 200), 1, cv2.LINE_AA)
        _label(img, f"{marker_id}: {markers.NAMES[marker_id]} ({markers.SIZES_MM[marker_id]:.0f} mm)", anchor)
    strip = scene.project(np.array([0.068, scene.y_body, 0.4 + 0.03])).astype(int)
    _label(img, "chest strip (flashes)", (int(strip[0]) + 60 * right - (0 if right > 0 else 200), int(strip[1]) - 10),
           (120, 0, 120))
    _label(img, f"{leg} leg, seen from the robot's {'left' if scene.side > 0 else 'right'} side; the body is on a stand",
           (12, s.height - 14), (30, 30, 30))
    return img


def write_protocol(out: Path, leg: str = "LF") -> list[Path]:
    """Every file of the kit into `out` (created; its files must not exist yet), written all or nothing."""
    from pidog_env.files import output_dir_problem
    if problem := output_dir_problem(out):
        raise PipelineError(f"--out {problem}")
    targets = [out / name for name in FILES]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise PipelineError(f"{existing[0]} exists; choose another --out (earlier files are never replaced)")
    out.mkdir(parents=True, exist_ok=True)
    side = "left" if robot.HIP_POSITIONS[leg][1] > 0 else "right"
    written: list[Path] = []
    try:
        page = sheet()
        for path, write in ((targets[0], lambda p: cv2.imwrite(str(p), page)), (targets[1], lambda p: write_pdf(page, p)),
                            (targets[2], lambda p: cv2.imwrite(str(p), placement(leg))),
                            (targets[3], lambda p: p.write_text(STEPS.format(leg=leg, side=side, distance="20-30 cm")))):
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
            write(tmp)
            os.replace(tmp, path)
            written.append(path)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written
