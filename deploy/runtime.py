"""The PiDog runtime: a fixed-rate loop that runs an exported policy on the robot (numpy + onnxruntime).

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

No vendor thread runs in this process (see deploy/vendor.py). Each tick, in this order: read the IMU
(one block read), build exactly the observation the env built (same order, scaling, gravity filter,
gait clock, last commanded targets, history), run the policy, pass the action through the safety
layer (safe joint envelope, 428 deg/s), write the 8 servos.

Start-up: refuse below the battery threshold or when the still robot's accelerometer is more than
0.1 g off, move lie -> stand over 1.5 s with our own interpolated writes, settle 0.75 s, start the
gravity filter from the mean of the settled samples. Stops, each followed by the same interpolated
lie-down with a deadline: time limit, Ctrl-C/SIGTERM (a second one, or one during the lie-down,
exits at once), tilt past the fall limit, no new IMU sample for 150 ms, failed servo writes on 3
ticks in a row, battery below its running threshold for 1.5 s, a loop slower than 1.1 x dt over 25
ticks or ticks longer than 0.8 x dt 5 times in a row, an exception. Timing statistics (tick duration
and real period, p50/p99) are printed at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deploy.policy_spec import PolicySpec
from deploy.safety import SafetyLayer
from pidog_env import robot
from pidog_env.observation import (CMD_VX_SCALE, CMD_WZ_SCALE, GYRO_SCALE, GravityEstimator, ObservationStack,
                                   build_frame, frame_layout, frame_size)
from pidog_env.observation import GRAVITY as G

SETTLE_S = 0.75                     # hold the stand pose this long before the policy runs
GRAVITY_INIT_SAMPLES = 10           # the gravity filter starts from the mean of this many settled samples
START_CHECK_SAMPLES = 20            # accelerometer samples (0.4 s) for the start-up offset check
STAND_S = LIE_S = 1.5               # interpolated pose moves
POSE_DEADLINE_MARGIN_S = 1.0        # a pose move that takes this much longer than asked is abandoned
SLOW_WINDOW = 25                    # ticks in the rolling mean of the real period
SLOW_PERIOD_FACTOR = 1.1            # stop when that mean exceeds this x dt
LONG_TICK_FACTOR = 0.8              # a tick (IMU + inference + writes) longer than this x dt is "long"
LONG_TICKS_IN_A_ROW = 5
FAILED_WRITE_TICKS = 3              # ticks in a row with a failed servo write
BATTERY_EVERY = 25                  # ticks between battery reads (0.5 s)
SWITCH_INTERVAL_S = 0.0001          # should any other thread hold the GIL, get it back within 0.1 ms, not 5 ms
RT_PRIORITY = 40                    # SCHED_FIFO priority of the control thread while it paces in real time:
                                    # above every normal process, below threaded IRQ handlers (50) such as I2C's;
                                    # the kernel's RT throttling still leaves 5 % of each second to others


def check_layout(spec: PolicySpec) -> None:
    """policy.json must describe the observation this runtime builds (layout, scales, size), or we refuse."""
    if spec.ultrasonic:
        raise ValueError("policy.json uses the ultrasonic sensor, which this runtime does not read "
                         "(the vendor's reader busy-waits holding the GIL); export a policy trained without it")
    ours = {k: [v.start, v.stop] for k, v in frame_layout(spec.ultrasonic, spec.command).items()}
    if spec.frame_layout != ours:
        raise ValueError(f"policy.json frame_layout {spec.frame_layout} differs from this runtime's {ours}; "
                         "export the policy with this version")
    if spec.gyro_scale != GYRO_SCALE:
        raise ValueError(f"policy.json gyro_scale {spec.gyro_scale} differs from this runtime's {GYRO_SCALE}")
    if spec.obs_size != frame_size(spec.ultrasonic, spec.command) * (spec.history + 1):
        raise ValueError(f"policy.json obs_size {spec.obs_size} does not match its layout and history {spec.history}")
    if spec.imu_accel_range_g != robot.IMU_ACCEL_RANGE_G:
        raise ValueError(f"policy.json was trained with a {spec.imu_accel_range_g} g accelerometer; this runtime "
                         f"sets {robot.IMU_ACCEL_RANGE_G} g")


class ObservationBuilder:
    """The env's observation, rebuilt from IMU samples and the commands actually sent."""

    def __init__(self, spec: PolicySpec) -> None:
        check_layout(spec)
        self.spec = spec
        self.frame = np.zeros(frame_size(spec.ultrasonic, spec.command))
        self.stack = ObservationStack(self.frame.size, spec.history)
        self.gravity = GravityEstimator(spec.gravity_alpha, spec.control_dt)
        self.ticks = 0

    def phase(self) -> float:
        return (self.ticks * self.spec.control_dt / self.spec.gait_period) % 1.0

    def reset(self, accel: np.ndarray, gyro: np.ndarray, command: np.ndarray,
              velocity: tuple[float, float] | None = None) -> np.ndarray:
        self.ticks = 0
        g = self.gravity.reset(list(map(float, accel)))
        return self.stack.reset(build_frame(self.frame, g, list(map(float, gyro)), command, self.phase(),
                                            command=self._velocity(velocity)))

    def step(self, accel: np.ndarray, gyro: np.ndarray, command: np.ndarray,
             velocity: tuple[float, float] | None = None) -> np.ndarray:
        """Observation after one more control step; `command` = the normalized targets sent last tick,
        `velocity` = the operator's (vx, wz) for command-task policies."""
        self.ticks += 1
        gyro = list(map(float, gyro))
        g = self.gravity(list(map(float, accel)), gyro)
        return self.stack.push(build_frame(self.frame, g, gyro, command, self.phase(),
                                           command=self._velocity(velocity)))

    def _velocity(self, velocity: tuple[float, float] | None) -> tuple[float, float] | None:
        if not self.spec.command:
            return None
        return (0.0, 0.0) if velocity is None else velocity


class OnnxPolicy:
    def __init__(self, path: str | Path, spec: PolicySpec) -> None:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1                # a tiny MLP: threads only add latency
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        if shape[-1] != spec.obs_size:
            raise ValueError(f"{path} expects {shape[-1]} inputs but policy.json describes {spec.obs_size}")

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"obs": obs.reshape(1, -1).astype(np.float32)})[0][0]


class ActionMapper:
    """Normalized actions <-> vendor servo degrees: the stand-pose offset, the scale, the per-joint envelope
    clip and the right-side sign flips, all from policy.json."""

    def __init__(self, spec: PolicySpec) -> None:
        self.signs = np.asarray(spec.leg_signs)
        self.offset = np.asarray(spec.action_offset_rad)
        self.scale = spec.action_scale_rad
        limits = np.asarray(spec.leg_q_limits_rad)
        self.q_lo, self.q_hi = limits[:, 0], limits[:, 1]

    def to_servo_deg(self, action: np.ndarray) -> np.ndarray:
        q = np.clip(self.offset + np.asarray(action, dtype=np.float64) * self.scale, self.q_lo, self.q_hi)
        return np.rad2deg(q) * self.signs

    def to_action(self, servo_deg: np.ndarray) -> np.ndarray:
        return (np.deg2rad(np.asarray(servo_deg, dtype=np.float64) * self.signs) - self.offset) / self.scale


@dataclass
class TimingStats:
    """Per tick: its duration (IMU read + inference + writes) and the real period since the previous tick."""

    tick_ms: list[float] = field(default_factory=list)
    period_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)     # |tick start - its scheduled time|
    overruns: int = 0                       # ticks that started more than a whole period late
    realtime_priority: bool | None = None   # whether the loop ran at SCHED_FIFO priority (None: not paced)

    def summary(self) -> dict[str, float]:
        def pct(xs, q):
            return float(np.percentile(xs, q)) if xs else float("nan")
        return {"ticks": len(self.tick_ms), "tick_duration_p50_ms": pct(self.tick_ms, 50),
                "tick_duration_p99_ms": pct(self.tick_ms, 99), "period_p50_ms": pct(self.period_ms, 50),
                "period_p99_ms": pct(self.period_ms, 99), "inference_p50_ms": pct(self.inference_ms, 50),
                "inference_p99_ms": pct(self.inference_ms, 99), "jitter_p50_ms": pct(self.jitter_ms, 50),
                "jitter_p99_ms": pct(self.jitter_ms, 99), "overruns": self.overruns,
                "realtime_priority": self.realtime_priority}

    def line(self) -> str:
        s = self.summary()
        return (f"{s['ticks']} ticks; tick duration p50 {s['tick_duration_p50_ms']:.2f} / p99 {s['tick_duration_p99_ms']:.2f} ms, "
                f"period p50 {s['period_p50_ms']:.2f} / p99 {s['period_p99_ms']:.2f} ms, inference p99 "
                f"{s['inference_p99_ms']:.3f} ms, overruns {s['overruns']}"
                + ("" if s["realtime_priority"] is None else
                   f", {'real-time' if s['realtime_priority'] else 'normal'} priority"))


@dataclass
class Stop:
    """Why the loop ended. kind: done (time limit / stand-only), signal, safety (a watchdog or the tilt
    limit), refused (start-up checks), error (an exception), aborted (exited without finishing the lie-down)."""

    kind: str
    message: str

    EXIT_CODES = {"done": 0, "signal": 0, "safety": 1, "error": 1, "refused": 2, "aborted": 3}

    @property
    def exit_code(self) -> int:
        return self.EXIT_CODES[self.kind]


class Abort(BaseException):
    """Leave at once, skipping the lie-down: a second signal, a signal during the lie-down, or a lie-down
    past its deadline (BaseException, so no `except Exception` on the way swallows it)."""


class _Halt(Exception):
    def __init__(self, stop: Stop) -> None:
        super().__init__(stop.message)
        self.stop = stop


class _Watchdog:
    """Bounds a pose move: after `seconds` it sends SIGALRM to the main thread (the handler raises Abort,
    which interrupts a blocked sleep or I/O call); if that does not end it within a second, it exits the
    process (the servos keep their last pulse)."""

    def __init__(self, seconds: float) -> None:
        self._done = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, args=(seconds,), name="runtime-lie-down-watchdog", daemon=True)
        self._thread.start()

    def _run(self, seconds: float) -> None:
        if self._done.wait(seconds):
            return
        signal.pthread_kill(self._main, signal.SIGALRM)
        if not self._done.wait(1.0):
            print(f"error: the lie-down is still blocked {seconds + 1:.1f} s after it started; exiting", file=sys.stderr)
            os._exit(3)

    def cancel(self) -> None:
        self._done.set()
        self._thread.join(timeout=1.0)


def hold_stand_policy(spec: PolicySpec):
    """A policy that holds the stand pose (for --stand-only)."""
    action = ActionMapper(spec).to_action(np.asarray(spec.stand_pose_deg)).astype(np.float32)
    return lambda obs: action


class ControlLoop:
    def __init__(self, spec: PolicySpec, policy, hardware, realtime: bool = True, log: bool = False,
                 settle_s: float = SETTLE_S, stand_s: float = STAND_S, lie_s: float = LIE_S, say=print,
                 enforce_timing: bool = True, commands=None) -> None:
        self.spec, self.policy, self.hw, self.realtime = spec, policy, hardware, realtime
        self.enforce_timing = enforce_timing          # False only to measure a too-slow loop (bench/deploy_latency.py)
        self.stand_s, self.lie_s = stand_s, lie_s
        self.dt = spec.control_dt
        self.mapper = ActionMapper(spec)
        self.builder = ObservationBuilder(spec)
        self.stand = np.asarray(spec.stand_pose_deg, dtype=np.float64)
        self.lie = np.asarray(spec.lie_pose_deg, dtype=np.float64)
        # The vendor's start-up leaves the legs in the lie pose: pose moves start from there.
        self.safety = SafetyLayer(spec.leg_servo_limits_deg, spec.leg_speed_deg_s, self.dt, self.lie, spec.fall_tilt_deg)
        self.settle_s = settle_s if not hasattr(hardware, "teleport_pose") else 0.0
        self.say = say
        self.stats = TimingStats()
        self.log: dict[str, list] | None = {"obs": [], "action": [], "command_deg": []} if log else None
        if self.log is not None and spec.command:
            self.log["commands"] = []                 # the operator's (vx, wz) each tick, for --commands LOG
        if spec.command and commands is None:
            raise ValueError("a command-task policy needs a command source (deploy.commands)")
        self.commands = commands if spec.command else None
        self.velocity = (0.0, 0.0)                    # the operator's command the policy sees (command task)
        self.obs: np.ndarray | None = None            # the observation the next tick acts on, when already built
        self.last_obs: np.ndarray | None = None       # the observation the last tick acted on
        self.command = self.mapper.to_action(self.lie)
        self._signal: int | None = None
        self._lying_down = False
        self._last_sample: tuple[np.ndarray, np.ndarray] | None = None
        self._last_fresh = 0.0
        self._failed_write_ticks = 0
        self._long_ticks = 0
        self._battery_low_since: float | None = None
        self.failed_writes = 0
        self.stopped: Stop | None = None

    # ------------------------------------------------------------------ signals
    def request_stop(self, signum: int, frame=None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGALRM:
            raise Abort(f"the lie-down did not finish within {self.lie_s + POSE_DEADLINE_MARGIN_S:.1f} s")
        if self._lying_down or self._signal is not None:
            raise Abort(f"{name} received again: exiting without finishing the lie-down")
        self._signal = signum

    # ------------------------------------------------------------------ sensors
    def read_imu(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """A new IMU sample, or the last one again while the IMU is briefly silent; halts after 150 ms."""
        sample = self.hw.read_imu()
        if sample is None and self._last_sample is None:       # nothing yet: retry for up to 150 ms
            while sample is None and time.perf_counter() - now <= robot.IMU_STALE_S:
                time.sleep(0.002)
                sample = self.hw.read_imu()
            now = time.perf_counter()
        if sample is not None:
            self._last_sample, self._last_fresh = sample, now
            return sample
        if self._last_sample is None or now - self._last_fresh > robot.IMU_STALE_S:
            raise _Halt(Stop("safety", f"IMU: no new sample for {1000 * robot.IMU_STALE_S:.0f} ms"))
        return self._last_sample

    def _sleep_until(self, t: float) -> None:
        if self.realtime:
            delay = t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    # ------------------------------------------------------------------ poses
    def move_to(self, pose_deg: np.ndarray, seconds: float) -> None:
        """Interpolate from the last command to `pose_deg` over `seconds` with our own writes, at the control rate."""
        pose = np.asarray(pose_deg, dtype=np.float64)
        if hasattr(self.hw, "teleport_pose"):                 # the simulator: an episode starts standing
            self.hw.teleport_pose(pose)
            self.safety.reset(pose)
            return
        start, n = self.safety.last.copy(), max(1, int(round(seconds / self.dt)))
        t0 = time.perf_counter()
        for k in range(1, n + 1):
            if time.perf_counter() - t0 > seconds + POSE_DEADLINE_MARGIN_S:
                raise _Halt(Stop("safety", f"a pose move overran its {seconds:.1f} s by more than {POSE_DEADLINE_MARGIN_S} s"))
            if not self.hw.write_legs(self.safety.filter(start + (pose - start) * k / n)):
                self.failed_writes += 1
            self._sleep_until(t0 + k * self.dt)
        self.command = self.mapper.to_action(self.safety.last)

    def lie_down(self) -> None:
        """The final move, bounded by a watchdog; a signal during it exits at once (Abort)."""
        self._lying_down = True
        watchdog = _Watchdog(self.lie_s + POSE_DEADLINE_MARGIN_S) if threading.current_thread() is threading.main_thread() else None
        try:
            self.move_to(self.lie, self.lie_s)
        except _Halt:
            pass                                              # a slow lie-down still ends lying (or aborted)
        except Exception as exc:                              # report the original stop, and this too
            self.stopped = Stop(self.stopped.kind if self.stopped else "error",
                                f"{self.stopped.message if self.stopped else ''}; the lie-down failed: "
                                f"{type(exc).__name__}: {exc}".lstrip("; "))
        finally:
            if watchdog:
                watchdog.cancel()
            self._lying_down = False

    # ------------------------------------------------------------------ start-up
    def check_start(self) -> None:
        """Battery and IMU offsets, with the robot still and lying (before anything moves)."""
        volts = self.hw.battery_voltage()
        if volts is not None:
            self.say(f"battery: {volts:.2f} V")
            if volts < robot.BATTERY_MIN_START_V:
                raise _Halt(Stop("refused", f"battery at {volts:.2f} V is below {robot.BATTERY_MIN_START_V} V: "
                                            "charge it before standing"))
        if hasattr(self.hw, "teleport_pose"):
            return                           # the simulated robot starts standing, with the env's own IMU model
        acc = []
        t0 = time.perf_counter()
        for k in range(START_CHECK_SAMPLES):
            acc.append(self.read_imu(time.perf_counter())[0])
            self._sleep_until(t0 + (k + 1) * self.dt)
        mean = np.mean(acc, axis=0)
        offset = float(np.linalg.norm(mean - [0.0, 0.0, G]) / G)
        self.say(f"IMU at rest: accelerometer {np.round(mean, 2).tolist()} m/s^2 (offset {offset:.3f} g)")
        if offset > robot.IMU_START_OFFSET_MAX_G:
            raise _Halt(Stop("refused", f"the resting accelerometer is {offset:.2f} g off (limit "
                                        f"{robot.IMU_START_OFFSET_MAX_G} g): put the robot level and still, and check "
                                        "the IMU module's mounting with --imu-check"))

    def start(self) -> None:
        """Checks, lie -> stand, settle, then the first observation (gait clock at phase 0, command = stand)."""
        self.check_start()
        self.move_to(self.stand, self.stand_s)
        recent: deque[np.ndarray] = deque(maxlen=GRAVITY_INIT_SAMPLES)
        t0 = time.perf_counter()
        for k in range(int(round(self.settle_s / self.dt))):
            acc, _ = self.read_imu(time.perf_counter())
            recent.append(acc)
            if not self.hw.write_legs(self.stand):
                self.failed_writes += 1
            self._sleep_until(t0 + (k + 1) * self.dt)
        acc, gyro = self.read_imu(time.perf_counter())
        recent.append(acc)
        self.command = self.mapper.to_action(self.stand)
        self._poll_commands()
        self.obs = self.builder.reset(np.mean(recent, axis=0), gyro, self.command, self.velocity)

    def _poll_commands(self) -> None:
        """The operator's latest (vx, wz), read once per tick before the observation is built."""
        if self.commands is None:
            return
        velocity = self.commands.poll()
        if self.commands.quit:
            raise _Halt(Stop("done", "quit by the operator"))
        self.velocity = velocity
        if hasattr(self.hw, "set_command"):
            self.hw.set_command(velocity)

    # ------------------------------------------------------------------ the loop
    def tick(self) -> bool:
        """One control step: IMU -> observation -> policy -> safety -> servos. False when the loop must stop
        (the reason is in `self.stopped`)."""
        try:
            self._tick()
            return True
        except _Halt as halt:
            self.stopped = halt.stop
            return False

    def _tick(self) -> None:
        t0 = time.perf_counter()
        obs = self.obs
        if obs is None:
            accel, gyro = self.read_imu(t0)
            self._poll_commands()
            obs = self.builder.step(accel, gyro, self.command, self.velocity)
            if self.safety.tilted(self.builder.gravity.state):
                raise _Halt(Stop("safety", "tilt beyond the fall limit"))
        self.obs, self.last_obs = None, obs
        t1 = time.perf_counter()
        action = self.policy(obs)
        self.stats.inference_ms.append(1000 * (time.perf_counter() - t1))
        command_deg = self.safety.filter(self.mapper.to_servo_deg(action))
        ok = self.hw.write_legs(command_deg)
        self.command = self.mapper.to_action(command_deg)
        if self.log is not None:
            self.log["obs"].append(obs.copy())
            self.log["action"].append(np.asarray(action, dtype=np.float32))
            self.log["command_deg"].append(command_deg)
            if "commands" in self.log:
                self.log["commands"].append(self.velocity)
        duration = time.perf_counter() - t0
        self.stats.tick_ms.append(1000 * duration)
        self.failed_writes += not ok
        self._failed_write_ticks = 0 if ok else self._failed_write_ticks + 1
        if self._failed_write_ticks >= FAILED_WRITE_TICKS:
            raise _Halt(Stop("safety", f"servo writes failed on {FAILED_WRITE_TICKS} ticks in a row (I2C)"))
        self._long_ticks = self._long_ticks + 1 if duration > LONG_TICK_FACTOR * self.dt else 0
        if self.realtime and self.enforce_timing and self._long_ticks >= LONG_TICKS_IN_A_ROW:
            raise _Halt(Stop("safety", f"ticks took over {1000 * LONG_TICK_FACTOR * self.dt:.0f} ms "
                                       f"{LONG_TICKS_IN_A_ROW} times in a row (last {1000 * duration:.1f} ms)"))

    def _check_battery(self, now: float) -> None:
        volts = self.hw.battery_voltage()
        if volts is None or volts >= robot.BATTERY_MIN_RUN_V:
            self._battery_low_since = None
            return
        self._battery_low_since = self._battery_low_since or now
        if now - self._battery_low_since >= robot.BATTERY_LOW_SECONDS:
            raise _Halt(Stop("safety", f"battery below {robot.BATTERY_MIN_RUN_V} V for {robot.BATTERY_LOW_SECONDS} s "
                                       f"(last {volts:.2f} V)"))

    def _loop(self, seconds: float) -> Stop:
        dt = self.dt
        periods: deque[float] = deque(maxlen=SLOW_WINDOW)
        next_t = time.perf_counter()
        previous_start: float | None = None
        for i in range(int(round(seconds / dt))):
            if self._signal is not None:
                return Stop("signal", f"{signal.Signals(self._signal).name} received")
            self._sleep_until(next_t)
            start = time.perf_counter()
            if self.realtime:
                self.stats.jitter_ms.append(1000 * abs(start - next_t))
                if previous_start is not None:
                    period = start - previous_start
                    self.stats.period_ms.append(1000 * period)
                    periods.append(period)
                    if (self.enforce_timing and len(periods) == SLOW_WINDOW
                            and sum(periods) / SLOW_WINDOW > SLOW_PERIOD_FACTOR * dt):
                        return Stop("safety", f"the loop runs at {SLOW_WINDOW / sum(periods):.1f} Hz (mean period "
                                              f"{1000 * sum(periods) / SLOW_WINDOW:.1f} ms over {SLOW_WINDOW} ticks, "
                                              f"limit {1000 * SLOW_PERIOD_FACTOR * dt:.0f} ms)")
                previous_start = start
                if start - next_t > dt:
                    self.stats.overruns += 1
                    next_t = start                      # do not try to catch up in a burst
                next_t += dt
            self._tick()
            if i % BATTERY_EVERY == BATTERY_EVERY - 1:
                self._check_battery(time.perf_counter())
        return Stop("done", "time limit reached")

    def run(self, seconds: float) -> Stop:
        """Start, run the policy for `seconds` (or until a stop), lie down. Returns why it stopped."""
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
        previous = {s: signal.signal(s, self.request_stop) for s in handled} \
            if threading.current_thread() is threading.main_thread() else {}
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        restore_priority = self._raise_priority() if self.realtime else None
        try:
            try:
                self.start()
                self.stopped = self._loop(seconds)
            except _Halt as halt:
                self.stopped = halt.stop
            except Exception as exc:  # any failure: lie down first, then report
                self.stopped = Stop("error", f"exception: {type(exc).__name__}: {exc}")
            if self._signal is not None and self.stopped.kind == "done":
                self.stopped = Stop("signal", f"{signal.Signals(self._signal).name} received")
            self.lie_down()
        except Abort as exc:
            self.stopped = Stop("aborted", str(exc))
        finally:
            sys.setswitchinterval(switch)
            if restore_priority is not None:
                restore_priority()
            for s, h in previous.items():
                signal.signal(s, h)
        return self.stopped

    def _raise_priority(self) -> Callable[[], None] | None:
        """Real-time (SCHED_FIFO) priority for this thread, so that other processes cannot delay a tick;
        returns how to undo it, or None (with one line said) where the OS does not allow it."""
        if not hasattr(os, "sched_setscheduler"):
            return None
        try:
            before = os.sched_getscheduler(0), os.sched_getparam(0)
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        except OSError:
            self.say("note: no real-time priority (run as root, or grant CAP_SYS_NICE); ticks may be delayed "
                     "by other processes")
            self.stats.realtime_priority = False
            return None
        self.stats.realtime_priority = True
        return lambda: os.sched_setscheduler(0, *before)

    def save_log(self, path: Path) -> None:
        if self.log is not None:
            np.savez(path, **{k: np.asarray(v) for k, v in self.log.items()})


# ---------------------------------------------------------------------- operator tools
IMU_CHECK_STEPS = (
    # instruction, expected gravity component (index, sign), expected gyro rate during the motion (index, sign)
    ("tilt the nose DOWN (about 30 deg) and back", (0, +1), (1, +1)),
    ("tilt the LEFT side DOWN (about 30 deg) and back", (1, +1), (0, -1)),
)
IMU_CHECK_GRAVITY = 0.3             # |gravity component| (unit vector) that counts as tilted
IMU_CHECK_GYRO = 0.5                # rad/s that counts as turning


def imu_check(hw, spec: PolicySpec, seconds_per_step: float = 15.0, say=print) -> bool:
    """Guide the operator through two tilts and check the body-frame signs (gravity and gyro)."""
    gravity = GravityEstimator(spec.gravity_alpha, spec.control_dt)
    loop = ControlLoop(spec, hold_stand_policy(spec), hw, realtime=True, say=say)
    loop.check_start()                                      # a level, still robot first (also the mounting offsets)
    gravity.reset(list(map(float, loop.read_imu(time.perf_counter())[0])))
    passed = True
    for text, (gi, gsign), (wi, wsign) in IMU_CHECK_STEPS:
        say(f"IMU check: {text} within {seconds_per_step:.0f} s")
        seen_gravity = seen_gyro = wrong = False
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < seconds_per_step and not (seen_gravity and seen_gyro):
            acc, gyro = loop.read_imu(time.perf_counter())
            g = gravity(list(map(float, acc)), list(map(float, gyro)))
            seen_gravity |= gsign * g[gi] > IMU_CHECK_GRAVITY
            seen_gyro |= wsign * gyro[wi] > IMU_CHECK_GYRO
            wrong |= -gsign * g[gi] > IMU_CHECK_GRAVITY
            if k % 10 == 0:
                say(f"  gravity {g[0]:+.2f} {g[1]:+.2f} {g[2]:+.2f}   gyro {gyro[0]:+.2f} {gyro[1]:+.2f} {gyro[2]:+.2f} rad/s")
            k += 1
            time.sleep(max(0.0, t0 + k * spec.control_dt - time.perf_counter()))
        axis = "xyz"
        if seen_gravity and seen_gyro:
            say(f"  PASS: gravity_{axis[gi]} {'>' if gsign > 0 else '<'} 0 and gyro_{axis[wi]} {'>' if wsign > 0 else '<'} 0")
        else:
            passed = False
            why = ("the opposite sign was seen: is the IMU module rotated 180 deg?" if wrong else
                   "the expected tilt was not seen")
            say(f"  FAIL: gravity_{axis[gi]} {'>' if gsign > 0 else '<'} {gsign * IMU_CHECK_GRAVITY:+.1f} "
                f"{'seen' if seen_gravity else 'not seen'}, gyro_{axis[wi]} {'seen' if seen_gyro else 'not seen'}; {why}")
    return passed


def read_log(path: str | Path, widths: dict[str, int | None],
             optional: dict[str, int | None] | None = None) -> dict[str, np.ndarray]:
    """Arrays of a runtime log (the .npz `--log` writes): every name in `widths` (and those of `optional`
    the log has) as a finite numeric (ticks, width) array (width None: any), the same number of ticks in
    each. Anything else is a ValueError naming the file and the problem, in one line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz runtime log (written by --log)")
    optional = optional or {}
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in widths if k not in z.files]
            if missing:
                raise ValueError(f"{path} is not a runtime log of this policy: it has no {', '.join(missing)} array")
            arrays = {k: z[k] for k in [*widths, *(k for k in optional if k in z.files)]}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(f"{path} holds pickled objects; refusing to load it") from None
        raise
    except Exception as exc:  # a damaged archive: zipfile, zlib and OSError
        raise ValueError(f"{path} is not a readable runtime log ({type(exc).__name__})") from None
    ticks: tuple[str, int] | None = None
    for name, a in arrays.items():
        width = {**optional, **widths}[name]
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {name} holds {a.dtype} values, not numbers")
        if a.size == 0:
            a = arrays[name] = a.reshape(0, width or 0)
        if a.ndim != 2 or (width is not None and a.shape[1] != width):
            raise ValueError(f"{path}: {name} has shape {a.shape}; (ticks, {width if width is not None else 'n'}) "
                             "expected (was the log recorded with this policy?)")
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"{path}: {name} holds {int(bad.sum())} non-finite value(s) (NaN or inf), the first "
                             f"at tick {int(np.argwhere(bad)[0][0])}")
        if ticks is None:
            ticks = (name, len(a))
        elif len(a) != ticks[1]:
            raise ValueError(f"{path}: {name} has {len(a)} ticks but {ticks[0]} has {ticks[1]}")
    return arrays


def replay(policy, log_path: Path, spec: PolicySpec | None = None) -> float:
    """Feed a recorded log through the policy offline; max |action difference| against the log. For a
    command-task policy, the commands recorded each tick must also be the ones in its observation."""
    log = read_log(log_path, {"obs": spec.obs_size if spec is not None else None,
                              "action": len(spec.leg_joints) if spec is not None else None}, {"commands": 2})
    obs, actions, commands = log["obs"], log["action"], log.get("commands")
    if spec is not None and spec.command and commands is not None and len(obs):
        lo, _ = spec.frame_layout["command"]
        seen = obs[:, lo:lo + 2] / np.array([CMD_VX_SCALE, CMD_WZ_SCALE])
        if not np.allclose(seen, commands, atol=1e-5):
            raise ValueError(f"{log_path}: the recorded commands are not the ones in the recorded observations")
    out = np.stack([policy(o) for o in obs]) if len(obs) else np.zeros((0, 8))
    return float(np.abs(out - actions).max()) if len(obs) else 0.0


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
    from deploy.vendor import PIDOG_CONF, read_pidog_conf, version_warnings
    from pidog_env.files import new_file_problem
    ap = _Parser(prog="python -m deploy.runtime", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", type=Path, required=True, help="policy.onnx (policy.json must sit beside it)")
    ap.add_argument("--hardware", choices=["pidog", "sim", "fake"], default="pidog",
                    help="the robot; MuJoCo; or the recording fake vendor stack (moves nothing, for rehearsal)")
    ap.add_argument("--seconds", type=_positive_seconds, default=20.0, help="policy (or --stand-only hold) time")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--stand-only", action="store_true", help="stand, hold the stand pose, lie down (no policy)")
    mode.add_argument("--imu-check", action="store_true", help="check the IMU's signs while you tilt the robot by hand")
    mode.add_argument("--replay", type=Path, help="run a recorded log through the policy and exit")
    ap.add_argument("--dry-run", action="store_true", help="load no vendor library, move nothing, print the commands")
    ap.add_argument("--log", type=Path, help="save observations and actions (npz) for --replay")
    ap.add_argument("--conf", type=Path, default=PIDOG_CONF, help="the vendor's calibration file (servo offsets)")
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
    if not args.replay and (args.dry_run or args.hardware != "sim"):     # the calibration, before anything moves
        try:
            read_pidog_conf(args.conf)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        spec = PolicySpec.load(args.policy.with_name("policy.json"))
        check_layout(spec)
        policy = hold_stand_policy(spec) if args.stand_only or args.imu_check else OnnxPolicy(args.policy, spec)
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
        from deploy.commands import HELP, make_source
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
    except ImportError as exc:
        if commands is not None:
            commands.close()
        print(f"error: {exc} (install the SunFounder pidog library on the robot, or use --hardware sim)", file=sys.stderr)
        return 2
    try:
        for line in [*hw.describe(), *version_warnings(getattr(getattr(hw, "vendor", None), "versions", robot.TESTED_VENDOR_VERSIONS))]:
            print(line)
        if args.imu_check:
            ok = imu_check(hw, spec)
            print("IMU check passed" if ok else "IMU check FAILED: do not run a policy until it passes")
            return 0 if ok else 1
        loop = ControlLoop(spec, policy, hw, realtime=True, log=args.log is not None, commands=commands)
        stop = loop.run(args.seconds)
    except _Halt as halt:                                    # --imu-check's start-up checks
        print(f"error: {halt.stop.message}", file=sys.stderr)
        return halt.stop.exit_code
    finally:
        if commands is not None:
            commands.close()                                 # the terminal back to normal
        hw.close()
    if args.log:
        loop.save_log(args.log)
    print(f"stopped: {stop.message}; {loop.stats.line()}")
    if stop.kind == "refused":
        print(f"error: {stop.message}", file=sys.stderr)
    if stop.kind == "aborted" and loop._signal is not None:
        return 128 + loop._signal
    return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
