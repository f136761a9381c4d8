"""The PiDog runtime's control loop: a fixed-rate loop that runs an exported policy on the robot (numpy +
onnxruntime). Its command line is deploy/cli.py (`python -m deploy.runtime --help`), the IMU sign check
deploy/imu_check.py, log replay deploy/replay.py.

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

import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deploy.policy_spec import PolicySpec
from deploy.safety import SafetyLayer
from pidog_env import robot
from pidog_env.observation import (GYRO_SCALE, GravityEstimator, ObservationStack,
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


class Halt(Exception):
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
            raise Halt(Stop("safety", f"IMU: no new sample for {1000 * robot.IMU_STALE_S:.0f} ms"))
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
                raise Halt(Stop("safety", f"a pose move overran its {seconds:.1f} s by more than {POSE_DEADLINE_MARGIN_S} s"))
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
        except Halt:
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
                raise Halt(Stop("refused", f"battery at {volts:.2f} V is below {robot.BATTERY_MIN_START_V} V: "
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
            raise Halt(Stop("refused", f"the resting accelerometer is {offset:.2f} g off (limit "
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
            raise Halt(Stop("done", "quit by the operator"))
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
        except Halt as halt:
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
                raise Halt(Stop("safety", "tilt beyond the fall limit"))
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
            raise Halt(Stop("safety", f"servo writes failed on {FAILED_WRITE_TICKS} ticks in a row (I2C)"))
        self._long_ticks = self._long_ticks + 1 if duration > LONG_TICK_FACTOR * self.dt else 0
        if self.realtime and self.enforce_timing and self._long_ticks >= LONG_TICKS_IN_A_ROW:
            raise Halt(Stop("safety", f"ticks took over {1000 * LONG_TICK_FACTOR * self.dt:.0f} ms "
                                       f"{LONG_TICKS_IN_A_ROW} times in a row (last {1000 * duration:.1f} ms)"))

    def _check_battery(self, now: float) -> None:
        volts = self.hw.battery_voltage()
        if volts is None or volts >= robot.BATTERY_MIN_RUN_V:
            self._battery_low_since = None
            return
        self._battery_low_since = self._battery_low_since or now
        if now - self._battery_low_since >= robot.BATTERY_LOW_SECONDS:
            raise Halt(Stop("safety", f"battery below {robot.BATTERY_MIN_RUN_V} V for {robot.BATTERY_LOW_SECONDS} s "
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
            except Halt as halt:
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


if __name__ == "__main__":
    # `python -m deploy.runtime` is the documented command: run deploy/cli.py as the program. (It imports this
    # module as deploy.runtime; executing it by name, not importing it, keeps this module free of a loop back.)
    import runpy
    runpy.run_module("deploy.cli", run_name="__main__", alter_sys=True)
