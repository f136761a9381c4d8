"""On the robot: record the servo identification protocol for one leg (numpy and the runtime only).

    python -m deploy.sysid record --leg LF --out log.npz              # on the Pi, the robot on a stand
    python -m deploy.sysid record --leg LF --out log.npz --dry-run    # moves nothing, loads no vendor code

The robot stands on a stand so the recorded leg hangs free (see docs/sysid.md; `pidog sysid protocol`
prints the marker sheet and the steps). The recorder goes through the runtime's own control loop
(deploy/runtime.py): the start-up checks (battery, a still and level IMU), the stand-up, the safety layer's
joint envelope and leg-clearance guard, the tilt, timing, I2C and battery watchdogs, and the lie-down on
Ctrl-C, SIGTERM or SIGHUP. Only the rate limit differs: the protocol's slews and steps must reach the servo
as steps, so the speed cap is `STEP_LIMIT_DEG_S` instead of the vendor's 428 deg/s (the chirp and the trot
replay stay under 428 deg/s by construction).

The protocol (`build_plan`), at 50 Hz, every segment beginning with a flash of the chest RGB strip (for the
video's synchronization): static holds, no-load 60-90 deg slews, 10-60 deg steps both ways, +-1-3 deg
reversals, a 0.5-6 Hz chirp around the stand pose and a replay of the trot's targets. The other legs hold
the stand pose.

The log (`.npz`, no pickles): `t` (s, when each tick's servo write began), `command_deg` (ticks x 8, the
servo degrees written, vendor order and signs), `segment` (the segment of each tick), `segment_kind`
(one name per segment), `flash_t` (s, when each flash's LED write returned), `battery_t`/`battery_v`,
`meta` (JSON: leg, rate, versions, dry run, offsets).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pidog_env import robot

LOG_VERSION = 1
RATE_HZ = 50.0
DT = 1.0 / RATE_HZ
STEP_LIMIT_DEG_S = 100.0 * RATE_HZ     # speed cap of the safety layer while recording: 100 deg per tick
FLASH_TICKS = 5                        # the strip stays lit 0.1 s
FLASH_RGB = (255, 0, 255)              # magenta: bright in red and blue, dark in green (found by `track`)
SEGMENT_KINDS = ("hold", "slew", "step", "reversal", "chirp", "trot")
LOG_KEYS = ("t", "command_deg", "segment", "segment_kind", "flash_t", "battery_t", "battery_v", "meta")
MIN_SEGMENT_S = 0.4                    # flashes at least this far apart (so the video tells them apart)


@dataclass(frozen=True)
class Segment:
    kind: str
    targets: np.ndarray          # (ticks, 2): hip and knee of the recorded leg, model degrees (left-leg convention)


def _hold(pose, seconds: float) -> np.ndarray:
    return np.tile(np.asarray(pose, dtype=np.float64), (max(1, int(round(seconds * RATE_HZ))), 1))


def _rate_limited(targets: np.ndarray, start: np.ndarray, speed_deg_s: float = robot.LEG_SPEED_DEG_S) -> np.ndarray:
    out, cur, step = np.empty_like(targets), np.asarray(start, dtype=np.float64).copy(), speed_deg_s * DT
    for k, target in enumerate(targets):
        cur = cur + np.clip(target - cur, -step, step)
        out[k] = cur
    return out


def trot_targets(leg: str, seconds: float) -> np.ndarray:
    """The env's trot (pidog_env.gaits.TrotGait at the env's default settings) for one leg: its joint
    targets each control tick after the 428 deg/s rate limit, model degrees (ticks x 2)."""
    from pidog_env.config import EnvConfig
    from pidog_env.gaits import TrotGait
    cfg = EnvConfig()
    gait = TrotGait.for_config(cfg)
    ticks = int(round(seconds * RATE_HZ))
    phase = np.arange(ticks) * cfg.ctrl_dt / cfg.gait_period
    action = gait.action_at(phase[:, None])[:, 0].astype(np.float64)            # (ticks, 8)
    q = np.rad2deg(robot.STAND_Q + action * math.radians(cfg.action_scale_deg))
    i = robot.LEGS.index(leg)
    q_leg = q[:, 2 * i:2 * i + 2]
    return _rate_limited(q_leg, q_leg[0])


def build_plan(leg: str, quick: bool = False) -> list[Segment]:
    """The identification protocol for `leg` (model degrees). `quick`: a short version (tests, previews)."""
    if leg not in robot.LEGS:
        raise ValueError(f"leg must be one of {', '.join(robot.LEGS)}, got {leg!r}")
    i = robot.LEGS.index(leg)
    stand = np.rad2deg(robot.STAND_Q[2 * i:2 * i + 2])          # model degrees: the same for left and right
    hip0, knee0 = stand
    front = i < 2
    envelope = np.array([robot.HIP_ENVELOPE_DEG, robot.KNEE_ENVELOPE_DEG])

    def centre(joint: int, size: float) -> float:
        """The stand angle, moved as little as needed for +-size/2 to stay 2 deg inside the envelope."""
        lo, hi = envelope[joint]
        return float(np.clip(stand[joint], lo + size / 2 + 2, hi - size / 2 - 2))
    segs: list[Segment] = [Segment("hold", _hold(stand, 1.5))]
    holds = [(hip0 - 30, knee0 + 30), (hip0 + 25, knee0 - 20)] if front else [(hip0 - 35, knee0 + 30), (hip0 + 15, knee0 - 20)]
    for pose in holds[:1] if quick else holds:
        segs.append(Segment("hold", _hold(pose, 1.0)))
    segs.append(Segment("hold", _hold(stand, 0.6)))
    # No-load slews: the target jumps 60-90 deg and back (one joint at a time, the other at stand).
    for size in ((80,) if quick else (60, 90)):
        lo, hi = centre(0, size) - size / 2, centre(0, size) + size / 2
        segs.append(Segment("slew", np.vstack([_hold((lo, knee0), 0.5), _hold((hi, knee0), 0.6), _hold((lo, knee0), 0.6)])))
    segs.append(Segment("hold", _hold(stand, 0.5)))
    for size in ((70,) if quick else (60, 90)):
        lo, hi = centre(1, size) - size / 2, centre(1, size) + size / 2
        segs.append(Segment("slew", np.vstack([_hold((hip0, lo), 0.5), _hold((hip0, hi), 0.6), _hold((hip0, lo), 0.6)])))
    # Steps of 10-60 deg, up and down, about the stand pose.
    for joint in (0, 1):
        for size in ((10, 40) if quick else (10, 25, 40, 60)):
            a, b = stand.copy(), stand.copy()
            a[joint] = centre(joint, size) - size / 2
            b[joint] = centre(joint, size) + size / 2
            segs.append(Segment("step", np.vstack([_hold(a, 0.4), _hold(b, 0.45), _hold(a, 0.45)])))
    # Reversals: +-1-3 deg every 0.2 s about the stand pose (the servo's deadband and friction).
    for joint in (0, 1):
        for amp in ((2,) if quick else (1, 2, 3)):
            rows = [_hold(stand, 0.2)]
            for k in range(4):
                p = stand.copy()
                p[joint] += amp if k % 2 == 0 else -amp
                rows.append(_hold(p, 0.2))
            segs.append(Segment("reversal", np.vstack(rows)))
    # A 0.5-6 Hz logarithmic chirp of both joints about the stand pose (knee a quarter period behind).
    seconds = 4.0 if quick else 8.0
    t = np.arange(int(seconds * RATE_HZ)) * DT
    f0, f1 = 0.5, 6.0
    phase = 2 * np.pi * f0 * seconds / math.log(f1 / f0) * (np.exp(t / seconds * math.log(f1 / f0)) - 1)
    amp = np.array([10.0, 9.0])
    chirp = stand + amp * np.stack([np.sin(phase), np.sin(phase - np.pi / 2)], axis=1)
    segs.append(Segment("chirp", np.vstack([_hold(chirp[0], 0.4), _rate_limited(chirp, chirp[0])])))
    trot = trot_targets(leg, 2.5 if quick else 4.0)
    segs.append(Segment("trot", np.vstack([_hold(trot[0], 0.4), trot])))
    segs.append(Segment("hold", _hold(stand, 1.0)))
    return segs


def plan_commands(leg: str, plan: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """(servo degrees per tick, ticks x 8, the other legs at stand; segment index per tick)."""
    i = robot.LEGS.index(leg)
    rows, seg = [], []
    for k, s in enumerate(plan):
        cmd = np.tile(robot.POSES_DEG["stand"], (len(s.targets), 1))
        cmd[:, 2 * i:2 * i + 2] = s.targets * robot.LEG_SIGNS[2 * i:2 * i + 2]
        rows.append(cmd)
        seg.append(np.full(len(s.targets), k))
    return np.vstack(rows), np.concatenate(seg)


# ---------------------------------------------------------------- the log
def save_log(path: Path, t, command_deg, segment, kinds, flash_t, battery_t, battery_v, meta: dict) -> None:
    """Write the log atomically (a temporary file renamed into place: no partial file on a failure)."""
    arrays = {"t": np.asarray(t, dtype=np.float64), "command_deg": np.asarray(command_deg, dtype=np.float64),
              "segment": np.asarray(segment, dtype=np.int32), "segment_kind": np.asarray(kinds, dtype="<U16"),
              "flash_t": np.asarray(flash_t, dtype=np.float64), "battery_t": np.asarray(battery_t, dtype=np.float64),
              "battery_v": np.asarray(battery_v, dtype=np.float64),
              "meta": np.asarray(json.dumps({"log_version": LOG_VERSION, **meta}))}
    save_npz(path, **arrays)


def save_npz(path: Path, **arrays) -> None:
    """np.savez through a temporary file renamed into place (no partial file on a failure)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------- the chest strip
class DryRunStrip:
    def __init__(self, say=print) -> None:
        self.say = say

    def set(self, on: bool) -> None:
        self.say(f"[dry-run] chest strip {'on' if on else 'off'}")

    def close(self) -> None:
        pass


class VendorStrip:
    """The chest RGB strip through the vendor's `pidog.rgb_strip.RGBStrip` (no thread): all 11 LEDs at once."""

    def __init__(self) -> None:
        from pidog.rgb_strip import RGBStrip
        self.strip = RGBStrip(addr=0x74, nums=11)

    def set(self, on: bool) -> None:
        self.strip.display([list(FLASH_RGB) if on else [0, 0, 0]] * 11)

    def close(self) -> None:
        try:
            self.set(False)
        except OSError:
            pass


# ---------------------------------------------------------------- the recorder
def recorder_spec():
    """The runtime's PolicySpec for a stand-and-hold loop at 50 Hz (no policy file is involved)."""
    from deploy.policy_spec import PolicySpec
    from pidog_env.config import EnvConfig
    from pidog_env.observation import GRAVITY_ALPHA, GYRO_SCALE, frame_layout, frame_size
    cfg = EnvConfig()
    return PolicySpec(
        control_dt=DT, gait_period=cfg.gait_period, gravity_alpha=GRAVITY_ALPHA, history=0, ultrasonic=False,
        obs_size=frame_size(False, False), frame_layout={k: [v.start, v.stop] for k, v in frame_layout(False, False).items()},
        gyro_scale=GYRO_SCALE, leg_joints=list(robot.LEG_JOINTS), leg_signs=robot.LEG_SIGNS.tolist(),
        leg_q_limits_rad=robot.LEG_LIMITS_RAD.tolist(), action_offset_rad=robot.STAND_Q.tolist(),
        action_scale_rad=math.radians(cfg.action_scale_deg), leg_speed_deg_s=robot.LEG_SPEED_DEG_S,
        leg_servo_limits_deg=robot.LEG_SERVO_LIMITS_DEG.tolist(), imu_accel_range_g=robot.IMU_ACCEL_RANGE_G,
        stand_pose_deg=robot.POSES_DEG["stand"].tolist(), lie_pose_deg=robot.POSES_DEG["lie"].tolist(),
        fall_tilt_deg=cfg.fall_tilt_deg, env_config_hash="", source="deploy.sysid")


def make_recorder(commands_deg: np.ndarray, segment: np.ndarray, hardware, strip, realtime: bool = True, say=print):
    """A `deploy.runtime.ControlLoop` whose "policy" plays the protocol's servo degrees tick by tick: the
    same start-up, stand-up, safety layer, watchdogs and lie-down as a policy run."""
    from deploy.runtime import ActionMapper, ControlLoop
    from deploy.safety import LegClearance, SafetyLayer

    class DegreeMapper(ActionMapper):
        def to_target_deg(self, action: np.ndarray) -> np.ndarray:        # the "action" is servo degrees
            return np.asarray(action, dtype=np.float64)

    class Recorder(ControlLoop):
        def __init__(self) -> None:
            spec = recorder_spec()
            super().__init__(spec, self._next, hardware, realtime=realtime, say=say)
            self.mapper = DegreeMapper(spec)
            self.safety = SafetyLayer(spec.leg_servo_limits_deg, STEP_LIMIT_DEG_S, self.dt, self.lie,
                                      spec.fall_tilt_deg, clearance=LegClearance(spec.leg_signs, spec.leg_servo_limits_deg))
            self.k = 0
            self.t0: float | None = None
            self.t: list[float] = []
            self.sent: list[np.ndarray] = []
            self.flash_t: list[float] = []
            self.battery: list[tuple[float, float]] = []
            self.lit_until = -1

        def _now(self) -> float:
            now = time.perf_counter()
            if self.t0 is None:
                self.t0 = now
            return now - self.t0

        def _next(self, obs) -> np.ndarray:
            k = min(self.k, len(commands_deg) - 1)
            if self.k < len(commands_deg) and (k == 0 or segment[k] != segment[k - 1]):
                strip.set(True)
                self.flash_t.append(self._now())
                self.lit_until = self.k + FLASH_TICKS
            elif self.k == self.lit_until:
                strip.set(False)
            self.k += 1
            return commands_deg[k]

        def _write(self, servo_deg: np.ndarray) -> bool:
            recording = 0 < self.k <= len(commands_deg) and len(self.t) < self.k
            now = self._now() if recording else 0.0
            ok = super()._write(servo_deg)
            if recording:
                self.t.append(now)
                self.sent.append(np.asarray(servo_deg, dtype=np.float64).copy())
            return ok

        def _check_battery(self, now: float) -> None:
            volts = self.hw.battery_voltage()
            if volts is not None and self.t0 is not None:
                self.battery.append((now - self.t0, float(volts)))
            super()._check_battery(now)

    return Recorder()


def record(leg: str, out: Path, hardware, strip, quick: bool = False, realtime: bool = True, meta: dict | None = None,
           say=print) -> int:
    plan = build_plan(leg, quick)
    commands, segment = plan_commands(leg, plan)
    loop = make_recorder(commands, segment, hardware, strip, realtime=realtime, say=say)
    say(f"recording {leg}: {len(plan)} segments, {len(commands) * DT:.1f} s at {RATE_HZ:.0f} Hz")
    try:
        stop = loop.run(len(commands) * DT)
    finally:
        strip.close()
    complete = len(loop.t) == len(commands)
    say(f"stopped: {stop.message}; {loop.stats.line()}; leg-clearance guard: {loop.safety.interventions} interventions")
    if not complete:
        say(f"error: the recording stopped after {len(loop.t)} of {len(commands)} ticks; nothing was written")
        return stop.exit_code or 1
    bt = np.array([b[0] for b in loop.battery]) if loop.battery else np.zeros(0)
    bv = np.array([b[1] for b in loop.battery]) if loop.battery else np.zeros(0)
    save_log(out, loop.t, loop.sent, segment, [s.kind for s in plan], loop.flash_t, bt, bv,
             {"leg": leg, "rate_hz": RATE_HZ, "flash_rgb": list(FLASH_RGB), "flash_ticks": FLASH_TICKS,
              "quick": quick, "guard_interventions": loop.safety.interventions, **(meta or {})})
    say(f"wrote {out}: {len(commands)} ticks, {len(plan)} flashes"
        + (f", battery {bv.min():.2f}-{bv.max():.2f} V" if bv.size else ""))
    return 0


# ---------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):                    # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    from pidog_env.files import new_file_problem
    ap = _Parser(prog="python -m deploy.sysid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("record", help="record the identification protocol for one leg")
    p.add_argument("--leg", choices=robot.LEGS, required=True, help="the leg that hangs free")
    p.add_argument("--out", type=Path, required=True, help="the log to write (.npz, must not exist)")
    p.add_argument("--dry-run", action="store_true", help="load no vendor library, move nothing, print the commands")
    p.add_argument("--quick", action="store_true", help="a short protocol (about 25 s), for a first try")
    p.add_argument("--hardware", choices=["pidog", "fake"], default="pidog",
                   help="the robot, or the recording fake vendor stack (moves nothing, for rehearsal)")
    p.add_argument("--conf", type=Path, help="the vendor's calibration file (default: as the runtime finds it)")
    p.add_argument("--uncalibrated", action="store_true", help="record although the robot has no calibration")
    args = ap.parse_args(argv)
    if args.out.suffix != ".npz":
        ap.error(f"--out {args.out}: the log is an .npz file")
    if problem := new_file_problem(args.out):
        ap.error(f"--out {problem}")
    meta = {"dry_run": args.dry_run, "hardware": "dry-run" if args.dry_run else args.hardware}
    if args.dry_run:
        from deploy.hardware import DryRunHardware
        hw = DryRunHardware(args.conf or Path(os.devnull), print_every=25)
        return record(args.leg, args.out, hw, DryRunStrip(), args.quick, realtime=False, meta=meta)
    from deploy.vendor import calibration_problem, hat_users, read_pidog_conf, vendor_conf_path
    conf = args.conf or vendor_conf_path()
    if conf is None:
        ap.error("no home directory to find the calibration file in; pass --conf PATH")
    try:
        offsets = read_pidog_conf(conf)
    except (OSError, ValueError) as exc:
        ap.error(str(exc))
    if (problem := calibration_problem(offsets, conf)) and not args.uncalibrated and args.hardware == "pidog":
        ap.error(f"{problem}: calibrate the robot first, or pass --uncalibrated")
    if args.hardware == "pidog" and (users := hat_users()):
        ap.error(f"another process drives the robot HAT: {'; '.join(users)}; stop it first")
    from deploy.hardware import RobotHardware
    try:
        if args.hardware == "fake":
            from deploy.fake_vendor import FakeVendor
            hw, strip = RobotHardware(FakeVendor(seed=0).stack(), conf), DryRunStrip(say=lambda line: None)
        else:
            from deploy.vendor import load_vendor
            hw = RobotHardware(load_vendor(), conf)
            strip = VendorStrip()
            strip.set(False)
    except (ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta.update(offsets=getattr(hw, "applied_offsets", lambda: {})(), versions=getattr(hw.vendor, "versions", {}))
    try:
        for line in hw.describe():
            print(line)
        return record(args.leg, args.out, hw, strip, args.quick, realtime=args.hardware == "pidog", meta=meta)
    finally:
        hw.close()


if __name__ == "__main__":
    sys.exit(main())
