"""The PiDog runtime's command line (`python -m deploy.runtime` runs it; the loop is deploy/runtime.py).

    python -m deploy.runtime --policy policy/policy.onnx --imu-check      # tilt the robot by hand: IMU signs
    python -m deploy.runtime --policy policy/policy.onnx --stand-only     # stand, hold, lie down (symmetry)
    python -m deploy.runtime --policy policy/policy.onnx                  # on the Pi: run the policy
    python -m deploy.runtime --policy policy/policy.onnx --dry-run        # print commands, move nothing
    python -m deploy.runtime --policy policy/policy.onnx --hardware sim   # MuJoCo instead of the robot
    python -m deploy.runtime --policy policy/policy.onnx --log run.npz    # record obs/actions ...
    python -m deploy.runtime --policy policy/policy.onnx --replay run.npz # ... and check them offline
    python -m deploy.runtime --policy cmd/policy.onnx                     # a command-task policy: drive it
                                                    # from the keyboard (arrows/WASD, space stop, q quit)
    python -m deploy.runtime --policy cmd/policy.onnx --commands gamepad  # ... or a gamepad (evdev)
    python -m deploy.runtime --policy cmd/policy.onnx --commands run.npz  # ... or a log's recorded commands
    python -m deploy.runtime --gait trot                                  # the hard-coded trot, no policy file
    python -m deploy.runtime --gait trot --commands 0.04,0                # ... at a chosen speed (m/s, rad/s)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from deploy.commands import HELP, make_source
from deploy.imu_check import imu_check
from deploy.policy_spec import PolicySpec
from deploy.replay import replay
from deploy.runtime import ControlLoop, Halt, OnnxPolicy, check_layout, hold_stand_policy
from deploy.vendor import calibration_problem, hat_users, read_pidog_conf, vendor_conf_path, version_warnings
from pidog_env import robot
from pidog_env.files import new_file_problem


def make_hardware(args, spec: PolicySpec | None = None):
    from deploy.hardware import DryRunHardware, MujocoHardware, RobotHardware
    if args.dry_run:
        return DryRunHardware(args.conf, print_every=25)
    if args.hardware == "sim":
        config = None
        if spec is not None and spec.command:                 # the simulated robot reports command tracking
            from pidog_env import config_tree
            from pidog_env.config import EnvConfig
            config = config_tree.apply(EnvConfig(), "command.enabled", True)
        return MujocoHardware(randomize=True, seed=args.seed, imu_timing=args.sim_imu, config=config)
    if args.hardware == "fake":
        from deploy.fake_vendor import FakeVendor
        return RobotHardware(FakeVendor(seed=args.seed).stack(), args.conf)
    from deploy.vendor import load_vendor
    return RobotHardware(load_vendor(), args.conf)


def trot_gait(command: bool = False):
    """The hard-coded trot as the runtime's policy, and the PolicySpec of the env it was tuned in (with the
    command input when `command`: its speed then follows --commands)."""
    from pidog_env import config_tree
    from pidog_env.config import EnvConfig
    from pidog_env.gaits import TrotGait
    from pidog_env.observation import GRAVITY_ALPHA, GYRO_SCALE, frame_layout
    cfg = config_tree.apply(EnvConfig(), "command.enabled", True) if command else EnvConfig()
    layout = frame_layout(False, command)
    spec = PolicySpec(
        control_dt=cfg.ctrl_dt, gait_period=cfg.gait_period, gravity_alpha=GRAVITY_ALPHA, history=0, ultrasonic=False,
        obs_size=max(v.stop for v in layout.values()), frame_layout={k: [v.start, v.stop] for k, v in layout.items()},
        gyro_scale=GYRO_SCALE, leg_joints=list(robot.LEG_JOINTS), leg_signs=robot.LEG_SIGNS.tolist(),
        leg_q_limits_rad=robot.LEG_LIMITS_RAD.tolist(), action_offset_rad=robot.STAND_Q.tolist(),
        action_scale_rad=math.radians(cfg.action_scale_deg), leg_speed_deg_s=robot.LEG_SPEED_DEG_S,
        leg_servo_limits_deg=robot.LEG_SERVO_LIMITS_DEG.tolist(), imu_accel_range_g=robot.IMU_ACCEL_RANGE_G,
        stand_pose_deg=robot.POSES_DEG["stand"].tolist(), lie_pose_deg=robot.POSES_DEG["lie"].tolist(),
        fall_tilt_deg=cfg.fall_tilt_deg, env_config_hash=cfg.hash(), source="pidog_env.gaits.TrotGait",
        command=command, command_vx_range=list(cfg.command.vx_range), command_wz_range=list(cfg.command.wz_range))
    check_layout(spec)
    return spec, TrotGait.for_config(cfg)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"must be in (0, 3600] seconds, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):                    # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m deploy.runtime", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--policy", type=Path, help="policy.onnx (policy.json must sit beside it)")
    source.add_argument("--gait", choices=["trot"], help="instead of a policy, the hard-coded trot (pidog_env.gaits) "
                        "through the same runtime: a known gait before a learned one")
    ap.add_argument("--hardware", choices=["pidog", "sim", "fake"], default="pidog",
                    help="the robot; MuJoCo; or the recording fake vendor stack (moves nothing, for rehearsal)")
    ap.add_argument("--seconds", type=_positive_seconds, default=20.0, help="policy (or --stand-only hold) time")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stand-only", action="store_true", help="stand, hold the stand pose, lie down (no policy)")
    mode.add_argument("--imu-check", action="store_true", help="check the IMU's signs while you tilt the robot by hand")
    mode.add_argument("--replay", type=Path, help="run a recorded log through the policy and exit")
    ap.add_argument("--dry-run", action="store_true", help="load no vendor library, move nothing, print the commands")
    ap.add_argument("--log", type=Path, help="save observations and actions (npz) for --replay")
    ap.add_argument("--conf", type=Path, help="the vendor's calibration file (servo offsets; default: "
                    "~/.config/pidog/pidog.conf of the user who ran sudo, else of this user, as the vendor finds it)")
    ap.add_argument("--uncalibrated", action="store_true",
                    help="run the robot although its calibration file is missing or every leg offset is zero")
    ap.add_argument("--sim-imu", choices=["robot", "ideal"], default="robot",
                    help="--hardware sim: the robot's IMU timing (sample age as on the robot) or an ideal IMU")
    ap.add_argument("--commands", metavar="SOURCE",
                    help="command-task policies: keyboard (default), gamepad[:/dev/input/eventN], VX,WZ (fixed), "
                         "or a runtime log .npz (its recorded commands)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.dry_run and args.imu_check:
        ap.error("--imu-check needs the real IMU; it cannot be combined with --dry-run")
    # np.savez adds .npz to a name without it: check the file it will write
    written = args.log if args.log is None or args.log.suffix == ".npz" else args.log.with_name(args.log.name + ".npz")
    if written is not None and (problem := new_file_problem(written)):
        print(f"error: --log {problem}", file=sys.stderr)
        return 2
    robot_run = args.hardware == "pidog" and not args.dry_run and not args.replay
    if not args.replay and (args.dry_run or args.hardware != "sim"):     # the calibration, before anything moves
        if args.conf is None:
            args.conf = vendor_conf_path()
        if args.conf is None:
            print("error: no home directory to find the calibration file in; pass --conf PATH", file=sys.stderr)
            return 2
        try:
            offsets = read_pidog_conf(args.conf)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        problem = calibration_problem(offsets, args.conf)
        if problem and robot_run and not args.imu_check and not args.uncalibrated:
            print(f"error: {problem}: the servos would run without their calibration offsets. Calibrate the "
                  "robot with SunFounder's calibration first (the offsets land in ~/.config/pidog/pidog.conf; "
                  "under sudo the runtime reads the invoking user's), point --conf at the file, or pass "
                  "--uncalibrated to run anyway", file=sys.stderr)
            return 2
        if problem and args.dry_run:
            print(f"note: {problem}: on the robot this run is refused without --uncalibrated")
    if robot_run and (users := hat_users()):
        print(f"error: another process drives the robot HAT: {'; '.join(users)}. Stop it first (SunFounder's "
              "apps and examples, or an auto-start service running one), or the two fight over the servos",
              file=sys.stderr)
        return 2
    if args.gait and args.replay:
        ap.error("--replay runs a log through a policy file: pass --policy")
    try:
        if args.gait:
            spec, policy = trot_gait(command=args.commands is not None)
        else:
            spec = PolicySpec.load(args.policy.with_name("policy.json"))
            check_layout(spec)
            policy = None if args.stand_only or args.imu_check else OnnxPolicy(args.policy, spec)
        policy = hold_stand_policy(spec) if args.stand_only or args.imu_check else policy
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot load the policy: {exc}", file=sys.stderr)
        return 2
    if args.commands is not None and not spec.command:
        ap.error("--commands is for command-task policies; this policy walks forward only")
    if args.replay:
        try:
            diff = replay(policy, args.replay, spec)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: --replay {exc}", file=sys.stderr)      # the message names the file
            return 2
        print(f"replayed {args.replay}: max |action - logged action| = {diff:.2e}")
        return 0 if diff < 1e-4 else 1
    commands = None
    if spec.command and not args.imu_check:
        source = args.commands or ("0,0" if args.stand_only else "keyboard")
        if source == "keyboard" and not sys.stdin.isatty():
            ap.error("a command-task policy reads the keyboard from a terminal; without one pass --commands "
                     "(gamepad, VX,WZ or a log .npz)")
        try:
            commands = make_source(source, spec.command_vx_range, spec.command_wz_range)
        except (ImportError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if source == "keyboard":
            print(HELP)
    try:
        hw = make_hardware(args, spec)
    except (ImportError, OSError) as exc:
        if commands is not None:
            commands.close()
        fix = ("install the SunFounder pidog library on the robot, or use --hardware sim" if isinstance(exc, ImportError)
               else "is the Robot HAT seated and powered? `i2cdetect -y 1` should list 0x14 and 0x36")
        print(f"error: {exc} ({fix})", file=sys.stderr)
        return 2
    try:
        for line in [*hw.describe(), *version_warnings(getattr(getattr(hw, "vendor", None), "versions", robot.TESTED_VENDOR_VERSIONS))]:
            print(line)
        mismatch = getattr(hw, "offset_problem", lambda: None)()
        if mismatch:
            print(f"error: {mismatch}", file=sys.stderr)
            return 2
        if args.imu_check:
            ok = imu_check(hw, spec)
            print("IMU check passed" if ok else "IMU check FAILED: do not run a policy until it passes")
            return 0 if ok else 1
        loop = ControlLoop(spec, policy, hw, realtime=True, log=args.log is not None, commands=commands)
        stop = loop.run(args.seconds)
    except Halt as halt:                                    # --imu-check's start-up checks
        print(f"error: {halt.stop.message}", file=sys.stderr)
        return halt.stop.exit_code
    except KeyboardInterrupt:                               # Ctrl-C during --imu-check (nothing moves there)
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        if commands is not None:
            commands.close()                                 # the terminal back to normal
        hw.close()
    if args.log:
        loop.save_log(args.log)
    try:
        print(f"stopped: {stop.message}; {loop.stats.line()}; leg-clearance guard: {loop.safety.interventions} "
              "interventions")
        if stop.kind == "refused":
            print(f"error: {stop.message}", file=sys.stderr)
    except OSError:
        pass                                                 # the terminal is gone (SIGHUP): the exit code remains
    if stop.kind == "aborted" and loop._signal is not None:
        return 128 + loop._signal
    return stop.exit_code

if __name__ == "__main__":
    sys.exit(main())
