"""The PiDog runtime: a fixed-rate loop that runs an exported policy on the robot (numpy + onnxruntime).

    python -m deploy.runtime --policy export/policy.onnx                  # on the Pi, robot on a stand
    python -m deploy.runtime --policy export/policy.onnx --dry-run        # print commands, move nothing
    python -m deploy.runtime --policy export/policy.onnx --hardware sim   # MuJoCo instead of the robot
    python -m deploy.runtime --policy export/policy.onnx --log run.npz    # record obs/actions ...
    python -m deploy.runtime --policy export/policy.onnx --replay run.npz # ... and check them offline

Each tick: read the IMU, build exactly the observation the env built (same order, scaling, gravity
filter, gait clock, last commanded targets, history), run the policy, map the action to vendor servo
degrees, pass it through the safety layer, send it. Start-up moves lie -> stand before the policy
takes over; a tilt past the fall limit, an exception, Ctrl-C/SIGTERM or repeated loop overruns stop
the policy and lay the robot down. Timing statistics are printed at the end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.policy_spec import PolicySpec
from deploy.safety import SafetyLayer
from pidog_env.observation import (GYRO_SCALE, GravityEstimator, ObservationStack, build_frame, frame_layout,
                                   frame_size)


def check_layout(spec: PolicySpec) -> None:
    """policy.json must describe the observation this runtime builds (layout, scales, size), or we refuse."""
    ours = {k: [v.start, v.stop] for k, v in frame_layout(spec.ultrasonic, privileged=False).items()}
    if spec.frame_layout != ours:
        raise ValueError(f"policy.json frame_layout {spec.frame_layout} differs from this runtime's {ours}; "
                         "export the policy with this version")
    if spec.gyro_scale != GYRO_SCALE:
        raise ValueError(f"policy.json gyro_scale {spec.gyro_scale} differs from this runtime's {GYRO_SCALE}")
    if spec.obs_size != frame_size(spec.ultrasonic, privileged=False) * (spec.history + 1):
        raise ValueError(f"policy.json obs_size {spec.obs_size} does not match its layout and history {spec.history}")


class ObservationBuilder:
    """The env's observation, rebuilt from IMU samples and the commands actually sent."""

    def __init__(self, spec: PolicySpec) -> None:
        check_layout(spec)
        self.spec = spec
        frame = frame_size(spec.ultrasonic, privileged=False)
        self.frame = np.zeros(frame)
        self.stack = ObservationStack(frame, spec.history)
        self.gravity = GravityEstimator(spec.gravity_alpha, spec.control_dt)
        self.ticks = 0

    def phase(self) -> float:
        return (self.ticks * self.spec.control_dt / self.spec.gait_period) % 1.0

    def reset(self, accel: np.ndarray, gyro: np.ndarray, command: np.ndarray, distance: float | None = None) -> np.ndarray:
        self.ticks = 0
        g = self.gravity.reset(list(map(float, accel)))
        f = build_frame(self.frame, g, list(map(float, gyro)), command, self.phase(), distance if self.spec.ultrasonic else None)
        return self.stack.reset(f)

    def step(self, accel: np.ndarray, gyro: np.ndarray, command: np.ndarray, distance: float | None = None) -> np.ndarray:
        """Observation after one more control step; `command` = the normalized targets sent last tick."""
        self.ticks += 1
        gyro = list(map(float, gyro))
        g = self.gravity(list(map(float, accel)), gyro)
        f = build_frame(self.frame, g, gyro, command, self.phase(), distance if self.spec.ultrasonic else None)
        return self.stack.push(f)


class OnnxPolicy:
    def __init__(self, path: str | Path, spec: PolicySpec) -> None:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1                # a tiny MLP: threads only add latency
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        if shape[-1] != spec.obs_size:
            raise ValueError(f"{path} expects {shape[-1]} inputs but policy.json describes {spec.obs_size}")

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"obs": obs.reshape(1, -1).astype(np.float32)})[0][0]


class ActionMapper:
    """Normalized actions <-> vendor servo degrees: the stand-pose offset, the scale, the joint clip and
    the right-side sign flips, all from policy.json."""

    def __init__(self, spec: PolicySpec) -> None:
        self.signs = np.asarray(spec.leg_signs)
        self.offset = np.asarray(spec.action_offset_rad)
        self.scale = spec.action_scale_rad
        self.q_max = spec.leg_q_max_rad

    def to_servo_deg(self, action: np.ndarray) -> np.ndarray:
        q = np.clip(self.offset + np.asarray(action, dtype=np.float64) * self.scale, -self.q_max, self.q_max)
        return np.rad2deg(q) * self.signs

    def to_action(self, servo_deg: np.ndarray) -> np.ndarray:
        return (np.deg2rad(np.asarray(servo_deg, dtype=np.float64) * self.signs) - self.offset) / self.scale


@dataclass
class TimingStats:
    inference_ms: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    overruns: int = 0

    def summary(self) -> dict[str, float]:
        def pct(xs, q):
            return float(np.percentile(xs, q)) if xs else float("nan")
        return {"ticks": len(self.inference_ms), "inference_p50_ms": pct(self.inference_ms, 50),
                "inference_p99_ms": pct(self.inference_ms, 99), "jitter_p50_ms": pct(self.jitter_ms, 50),
                "jitter_p99_ms": pct(self.jitter_ms, 99), "overruns": self.overruns}


class ControlLoop:
    def __init__(self, spec: PolicySpec, policy, hardware, realtime: bool = True, max_overruns: int = 10,
                 log: bool = False) -> None:
        self.spec, self.policy, self.hw, self.realtime = spec, policy, hardware, realtime
        self.mapper = ActionMapper(spec)
        self.builder = ObservationBuilder(spec)
        self.safety = SafetyLayer(spec.servo_limit_deg, spec.leg_speed_deg_s, spec.control_dt,
                                  np.asarray(spec.stand_pose_deg), spec.fall_tilt_deg)
        self.max_overruns = max_overruns
        self.stats = TimingStats()
        self.log: dict[str, list] | None = {"obs": [], "action": [], "command_deg": []} if log else None
        self.stop_reason = ""
        self._signal: int | None = None
        self.obs: np.ndarray | None = None

    def request_stop(self, signum: int, frame=None) -> None:
        self._signal = signum

    def start(self) -> None:
        """Lie -> stand, then the first observation (gait clock at phase 0, command = stand)."""
        stand = np.asarray(self.spec.stand_pose_deg)
        self.hw.move_to_pose(stand, seconds=1.5)
        self.safety.reset(stand)
        self.command = self.mapper.to_action(stand)
        self.obs = self.builder.reset(*self.hw.read_imu(), self.command)

    def tick(self) -> bool:
        """One control step; False when the loop must stop."""
        t0 = time.perf_counter()
        action = self.policy(self.obs)
        self.stats.inference_ms.append(1000 * (time.perf_counter() - t0))
        command_deg = self.safety.filter(self.mapper.to_servo_deg(action))
        self.hw.write_legs(command_deg)
        if self.log is not None:
            self.log["obs"].append(self.obs.copy())
            self.log["action"].append(np.asarray(action, dtype=np.float32))
            self.log["command_deg"].append(command_deg)
        self.command = self.mapper.to_action(command_deg)
        accel, gyro = self.hw.read_imu()
        self.obs = self.builder.step(accel, gyro, self.command)
        if self.safety.tilted(self.builder.gravity.state):
            self.stop_reason = "tilt beyond the fall limit"
            return False
        return True

    def run(self, seconds: float) -> str:
        """Run for `seconds` (or until a stop condition); always ends lying down. Returns the reason."""
        previous = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        period = self.spec.control_dt
        consecutive = 0
        try:
            self.start()
            n_ticks = int(round(seconds / period))
            next_t = time.perf_counter()
            for _ in range(n_ticks):
                if self._signal is not None:
                    self.stop_reason = f"{signal.Signals(self._signal).name} received"
                    break
                if self.realtime:
                    now = time.perf_counter()
                    if now < next_t:
                        time.sleep(next_t - now)
                    self.stats.jitter_ms.append(1000 * abs(time.perf_counter() - next_t))
                    late = time.perf_counter() - next_t > period
                    consecutive = consecutive + 1 if late else 0
                    if late:
                        self.stats.overruns += 1
                        next_t = time.perf_counter()            # do not try to catch up in a burst
                    if consecutive >= self.max_overruns:
                        self.stop_reason = f"loop overran its {1000 * period:.0f} ms period {consecutive} times in a row"
                        break
                    next_t += period
                if not self.tick():
                    break
            else:
                self.stop_reason = "time limit reached"
        except Exception as exc:  # any failure: lie down first, then report
            self.stop_reason = f"exception: {type(exc).__name__}: {exc}"
        finally:
            try:
                self.hw.move_to_pose(np.asarray(self.spec.lie_pose_deg), seconds=1.5)
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)
        return self.stop_reason

    def save_log(self, path: Path) -> None:
        if self.log is not None:
            np.savez(path, **{k: np.asarray(v) for k, v in self.log.items()})


def replay(policy, log_path: Path) -> float:
    """Feed a recorded log through the policy offline; max |action difference| against the log."""
    with np.load(log_path, allow_pickle=False) as z:
        obs, actions = z["obs"], z["action"]
    out = np.stack([policy(o) for o in obs]) if len(obs) else np.zeros((0, 8))
    return float(np.abs(out - actions).max()) if len(obs) else 0.0


def make_hardware(kind: str, dry_run: bool, seed: int):
    if kind == "sim":
        from deploy.hardware import MujocoHardware
        return MujocoHardware(randomize=True, seed=seed)
    from deploy.hardware import PidogHardware
    return PidogHardware(dry_run=dry_run)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", type=Path, required=True, help="policy.onnx (policy.json must sit beside it)")
    ap.add_argument("--hardware", choices=["pidog", "sim"], default="pidog")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--dry-run", action="store_true", help="print servo commands instead of moving")
    ap.add_argument("--log", type=Path, help="save observations and actions (npz) for --replay")
    ap.add_argument("--replay", type=Path, help="run a recorded log through the policy and exit")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    spec_path = args.policy.with_name("policy.json")
    try:
        spec = PolicySpec.load(spec_path)
        check_layout(spec)
        policy = OnnxPolicy(args.policy, spec)
    except (OSError, ValueError) as exc:
        print(f"error: cannot load the policy: {exc}", file=sys.stderr)
        return 2
    if args.replay:
        diff = replay(policy, args.replay)
        print(f"replayed {args.replay}: max |action - logged action| = {diff:.2e}")
        return 0 if diff < 1e-4 else 1
    try:
        hw = make_hardware(args.hardware, args.dry_run, args.seed)
    except ImportError as exc:
        print(f"error: {exc} (install the SunFounder pidog library on the robot, or use --hardware sim)",
              file=sys.stderr)
        return 2
    loop = ControlLoop(spec, policy, hw, realtime=True, log=args.log is not None)
    reason = loop.run(args.seconds)
    hw.close()
    if args.log:
        loop.save_log(args.log)
    s = loop.stats.summary()
    print(f"stopped: {reason}; {s['ticks']} ticks, inference p50 {s['inference_p50_ms']:.3f} ms / p99 "
          f"{s['inference_p99_ms']:.3f} ms, jitter p99 {s['jitter_p99_ms']:.2f} ms, overruns {s['overruns']}")
    return 0 if reason in ("time limit reached",) or reason.endswith("received") else 1


if __name__ == "__main__":
    sys.exit(main())
