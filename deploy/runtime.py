"""The PiDog runtime's control loop: a fixed-rate loop that runs an exported policy on the robot (numpy +
onnxruntime). Its command line is deploy/cli.py (`python -m deploy.runtime --help`), the IMU sign check
deploy/imu_check.py, log replay deploy/replay.py.

No vendor thread runs in this process (see deploy/vendor.py). Each tick, in this order: read the IMU
(one block read), build exactly the observation the env built (same order, scaling, gravity filter,
gait clock, last commanded targets, history), run the policy, pass the action through the safety
layer in the env's order (action clip, 428 deg/s rate limit, safe joint envelope; then the
leg-clearance guard), write the 8 servos.

Start-up: refuse below the battery threshold; with the robot lying still, measure the accelerometer and
gyro biases (the accelerometer's against a level robot) and refuse when the robot moved or a bias is
larger than the policy was trained with (`randomization.accel_bias`, `gyro_bias`), else subtract them
from every later sample; warm the policy up; move lie -> stand over 1.5 s with our own interpolated
writes, settle 0.75 s (a signal or a tilt past the fall limit during either ends it and lies down), start
the gravity filter from the mean of the settled samples. Stops, each followed by the same interpolated
lie-down with a deadline: time limit, Ctrl-C/SIGTERM (a second one, or one during the lie-down, exits
at once), SIGHUP (a dropped SSH session; a command-task policy first gets a zero command for 0.5 s, as
when its command input is lost), tilt past the fall limit, no new IMU sample for 150 ms, failed servo
writes on 3 ticks in a row, battery below its running threshold for 1.5 s, a loop slower than 1.1 x dt
over 25 ticks or ticks longer than 0.8 x dt 5 times in a row, a tick still running after 250 ms (a hung
bus; an interval timer interrupts it), an exception. When the bus is dead (the lie-down's writes fail or
hang), the servos are released through the HAT MCU's reset pin. Timing statistics (tick duration and
real period, p50/p99) are printed at the end.
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
from deploy.safety import LegClearance, SafetyLayer
from pidog_env import robot
from pidog_env.observation import (GYRO_SCALE, GravityEstimator, ObservationStack,
                                   build_frame, frame_layout, frame_size)
from pidog_env.observation import GRAVITY as G

SETTLE_S = 0.75                     # hold the stand pose this long before the policy runs
GRAVITY_INIT_SAMPLES = 10           # the gravity filter starts from the mean of this many settled samples
START_CHECK_SAMPLES = 20            # IMU samples (0.4 s) of the still, lying robot: biases and stillness
# The largest IMU biases the policy was trained with, per axis (the env's randomization.accel_bias and
# gyro_bias; tests/test_deploy.py keeps them equal). The measured biases are subtracted; a larger one is
# refused, since the measurement cannot tell a bias from a tilted floor (accelerometer) or slow motion
# (gyro), and subtracting a wrong one shifts the policy's input by as much.
ACCEL_BIAS_MAX = 0.3                # m/s^2
GYRO_BIAS_MAX = 0.03                # rad/s
STILL_ACCEL_SPREAD = 1.0            # m/s^2: a sample further than this from the mean: the robot moved
STILL_GYRO_SPREAD = 0.15            # rad/s: likewise
WARM_UP_RUNS = 3                    # policy inferences before the stand-up (onnxruntime's first run allocates)
STAND_S = LIE_S = 1.5               # interpolated pose moves
POSE_DEADLINE_MARGIN_S = 1.0        # a pose move that takes this much longer than asked is abandoned
SLOW_WINDOW = 25                    # ticks in the rolling mean of the real period
SLOW_PERIOD_FACTOR = 1.1            # stop when that mean exceeds this x dt
LONG_TICK_FACTOR = 0.8              # a tick (IMU + inference + writes) longer than this x dt is "long"
LONG_TICKS_IN_A_ROW = 5
TICK_DEADLINE_S = 0.25              # a tick (or a stand-up step) still running after this is hung: interrupt it
FAILED_WRITE_TICKS = 3              # ticks in a row with a failed servo write
BATTERY_EVERY = 25                  # ticks between battery reads (0.5 s)
INPUT_LOSS_BRAKE_S = 0.5            # after the operator's input is lost: zero command this long, then lie down
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
        self.obs_size = spec.obs_size

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"obs": obs.reshape(1, -1).astype(np.float32)})[0][0]

    def warm_up(self, runs: int = WARM_UP_RUNS) -> float:
        """Run the session a few times on a zero observation, so that the first control tick does not pay
        for onnxruntime's first-run allocations; returns the first run's milliseconds."""
        obs = np.zeros(self.obs_size, dtype=np.float32)
        t0 = time.perf_counter()
        self(obs)
        first = 1000 * (time.perf_counter() - t0)
        for _ in range(runs - 1):
            self(obs)
        return first


class ActionMapper:
    """Normalized actions <-> vendor servo degrees: the stand-pose offset, the scale, the per-joint envelope
    clip and the right-side sign flips, all from policy.json. `to_target_deg` leaves the envelope clip to the
    safety layer, which clips after its rate limit as the env does."""

    def __init__(self, spec: PolicySpec) -> None:
        self.signs = np.asarray(spec.leg_signs)
        self.offset = np.asarray(spec.action_offset_rad)
        self.scale = spec.action_scale_rad
        limits = np.asarray(spec.leg_q_limits_rad)
        self.q_lo, self.q_hi = limits[:, 0], limits[:, 1]

    def to_servo_deg(self, action: np.ndarray) -> np.ndarray:
        q = np.clip(self.offset + np.asarray(action, dtype=np.float64) * self.scale, self.q_lo, self.q_hi)
        return np.rad2deg(q) * self.signs

    def to_target_deg(self, action: np.ndarray) -> np.ndarray:
        """The action clipped to the action space [-1, 1] (as the env clips it), in servo degrees, unclipped
        to the envelope."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return np.rad2deg(self.offset + a * self.scale) * self.signs

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
    past its deadline (BaseException, so no `except Exception` on the way swallows it). `release`: the bus
    is hung, so let the servos go limp on the way out."""

    def __init__(self, message: str, release: bool = False) -> None:
        super().__init__(message)
        self.release = release


class TickHung(BaseException):
    """A tick (or a stand-up step) ran past TICK_DEADLINE_S: raised in the main thread by the tick watchdog's
    signal, which interrupts a blocked I2C call (BaseException: the vendor's retry loops catch OSError only,
    some of its functions any Exception)."""


class Halt(Exception):
    def __init__(self, stop: Stop) -> None:
        super().__init__(stop.message)
        self.stop = stop


class _Watchdog:
    """Bounds a pose move: after `seconds` it sends SIGALRM to the main thread (the handler raises Abort,
    which interrupts a blocked sleep or I/O call); if that does not end it within a second, it calls
    `give_up` (release the servos) and exits the process."""

    def __init__(self, seconds: float, give_up: Callable[[], None] | None = None) -> None:
        self._done = threading.Event()
        self._give_up = give_up
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, args=(seconds,), name="runtime-lie-down-watchdog", daemon=True)
        self._thread.start()

    def _run(self, seconds: float) -> None:
        if self._done.wait(seconds):
            return
        signal.pthread_kill(self._main, signal.SIGALRM)
        if not self._done.wait(1.0):
            print(f"error: the lie-down is still blocked {seconds + 1:.1f} s after it started; releasing the "
                  "servos and exiting", file=sys.stderr)
            if self._give_up is not None:
                try:
                    self._give_up()
                except Exception:
                    pass
            os._exit(3)

    def cancel(self) -> None:
        self._done.set()
        self._thread.join(timeout=1.0)


class _TickWatchdog:
    """The process's real-time interval timer, armed for each tick (and stand-up step): SIGALRM when one runs
    past `seconds`, whose handler raises TickHung in the main thread, interrupting a blocked I2C call. Two
    system calls a tick and no thread."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False

    def arm(self) -> None:
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.armed = False

    close = disarm


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
        self.safety = SafetyLayer(spec.leg_servo_limits_deg, spec.leg_speed_deg_s, self.dt, self.lie, spec.fall_tilt_deg,
                                  clearance=LegClearance(spec.leg_signs, spec.leg_servo_limits_deg))
        self.settle_s = settle_s if not hasattr(hardware, "teleport_pose") else 0.0
        self.say = say
        self.stats = TimingStats()
        self.log: dict[str, list] | None = {"obs": [], "action": [], "command_deg": [], "guard": []} if log else None
        if self.log is not None and spec.command:
            self.log["commands"] = []                 # the operator's (vx, wz) each tick, for --commands LOG
        if spec.command and commands is None:
            raise ValueError("a command-task policy needs a command source (deploy.commands)")
        self.commands = commands if spec.command else None
        self.velocity = (0.0, 0.0)                    # the operator's command the policy sees (command task)
        self.obs: np.ndarray | None = None            # the observation the next tick acts on, when already built
        self.last_obs: np.ndarray | None = None       # the observation the last tick acted on
        self.command = self.mapper.to_action(self.lie)   # the env's command: rate-limited, before the envelope clip
        # Measured with the robot lying still (check_start), subtracted from every sample after that.
        self.imu_bias = (np.zeros(3), np.zeros(3))
        self._signal: int | None = None
        self._lying_down = False
        self._moved = False                           # the stand-up began: stops lie down again
        self._brake: tuple[int, Stop] | None = None   # zero-command ticks left, then this stop
        self._watch: _TickWatchdog | None = None
        self._last_sample: tuple[np.ndarray, np.ndarray] | None = None
        self._last_fresh = 0.0
        self._last_write_ok = True
        self._failed_write_ticks = 0
        self._long_ticks = 0
        self._battery_low_since: float | None = None
        self._pose_gravity: GravityEstimator | None = None
        self.failed_writes = 0
        self.stopped: Stop | None = None

    # ------------------------------------------------------------------ signals
    def request_stop(self, signum: int, frame=None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGALRM:
            if self._lying_down:
                raise Abort(f"the lie-down did not finish within {self.lie_s + POSE_DEADLINE_MARGIN_S:.1f} s",
                            release=True)
            if self._watch is not None and self._watch.armed:
                raise TickHung(f"a tick was still running after {1000 * TICK_DEADLINE_S:.0f} ms (a hung I2C bus?)")
            return                                    # a late alarm for a step that has finished meanwhile
        if signum == signal.SIGHUP and (self._lying_down or self._signal is not None):
            return                                    # a closing terminal sends it more than once: no hurry asked
        if self._lying_down or self._signal is not None:
            raise Abort(f"{name} received again: exiting without finishing the lie-down")
        self._signal = signum

    def _check_requests(self, during: str) -> None:
        """During the stand-up: a signal ends it (the lie-down follows from where the legs are)."""
        if self._signal is not None:
            raise Halt(Stop("signal", f"{signal.Signals(self._signal).name} received during the {during}"))

    # ------------------------------------------------------------------ sensors
    def read_imu(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """A new IMU sample (biases subtracted), or the last one again while the IMU is briefly silent;
        halts after 150 ms."""
        sample = self.hw.read_imu()
        if sample is None and self._last_sample is None:       # nothing yet: retry for up to 150 ms
            while sample is None and time.perf_counter() - now <= robot.IMU_STALE_S:
                time.sleep(0.002)
                sample = self.hw.read_imu()
            now = time.perf_counter()
        if sample is not None:
            sample = (sample[0] - self.imu_bias[0], sample[1] - self.imu_bias[1])
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

    def _arm(self) -> None:
        if self._watch is not None:
            self._watch.arm()

    def _disarm(self) -> None:
        if self._watch is not None:
            self._watch.disarm()

    def _write(self, servo_deg: np.ndarray) -> bool:
        ok = self.hw.write_legs(servo_deg)
        self._last_write_ok = ok
        if not ok:
            self.failed_writes += 1
        return ok

    # ------------------------------------------------------------------ poses
    def move_to(self, pose_deg: np.ndarray, seconds: float, watch: bool = False) -> None:
        """Interpolate from the last command to `pose_deg` over `seconds` with our own writes, at the control
        rate. `watch` (the stand-up): each step also reads the IMU, and a signal or a tilt past the fall
        limit ends the move."""
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
            if watch:
                self._arm()
                self._watch_pose("stand-up")
            self._write(self.safety.filter(start + (pose - start) * k / n))
            self._disarm()
            self._sleep_until(t0 + k * self.dt)
        self.command = self.mapper.to_action(self.safety.command)

    def _watch_pose(self, during: str) -> np.ndarray:
        """One IMU read while the robot stands up: signals and the tilt limit end it; returns the accelerometer."""
        self._check_requests(during)
        acc, gyro = self.read_imu(time.perf_counter())
        if self._pose_gravity is not None and self.safety.tilted(self._pose_gravity(list(map(float, acc)),
                                                                                    list(map(float, gyro)))):
            raise Halt(Stop("safety", f"tilt beyond the fall limit during the {during}"))
        return acc

    def lie_down(self) -> None:
        """The final move, bounded by a watchdog; a signal during it exits at once (Abort). When its writes
        fail (the bus is dead), the servos are released instead."""
        self._lying_down = True
        watchdog = (_Watchdog(self.lie_s + POSE_DEADLINE_MARGIN_S, give_up=self.hw.release)
                    if threading.current_thread() is threading.main_thread() else None)
        dead = None
        try:
            self.move_to(self.lie, self.lie_s)
            if not self._last_write_ok:
                dead = "the lie-down's servo writes failed"
        except Halt:
            pass                                              # a slow lie-down still ends lying (or aborted)
        except Exception as exc:                              # report the original stop, and this too
            self.stopped = Stop(self.stopped.kind if self.stopped else "error",
                                f"{self.stopped.message if self.stopped else ''}; the lie-down failed: "
                                f"{type(exc).__name__}: {exc}".lstrip("; "))
            dead = ""
        finally:
            if watchdog:
                watchdog.cancel()
            self._lying_down = False
        if dead is not None:
            self.release(dead)

    def release(self, why: str = "") -> None:
        """Let the servos go limp (the bus-dead fallback: the HAT MCU's reset pin), noted in the stop's message."""
        try:
            self.hw.release()
            note = f"{why + ': ' if why else ''}servos released (HAT MCU reset)"
        except Exception as exc:
            note = f"{why + '; ' if why else ''}releasing the servos failed too: {type(exc).__name__}: {exc}"
        self.stopped = Stop(self.stopped.kind if self.stopped else "error",
                            f"{self.stopped.message + '; ' if self.stopped else ''}{note}")

    # ------------------------------------------------------------------ start-up
    def check_start(self) -> None:
        """Battery, and the IMU's biases with the robot still and lying (before anything moves)."""
        volts = self.hw.battery_voltage()
        if volts is not None:
            self.say(f"battery: {volts:.2f} V")
            if volts < robot.BATTERY_MIN_START_V:
                raise Halt(Stop("refused", f"battery at {volts:.2f} V is below {robot.BATTERY_MIN_START_V} V: "
                                           "charge it before standing"))
        if hasattr(self.hw, "teleport_pose"):
            return                           # the simulated robot starts standing, with the env's own IMU model
        acc, gyro = [], []
        t0 = time.perf_counter()
        for k in range(START_CHECK_SAMPLES):
            self._check_requests("start-up check")
            a, w = self.read_imu(time.perf_counter())
            acc.append(a)
            gyro.append(w)
            self._sleep_until(t0 + (k + 1) * self.dt)
        acc, gyro = np.asarray(acc), np.asarray(gyro)
        acc_bias, gyro_bias = acc.mean(axis=0) - [0.0, 0.0, G], gyro.mean(axis=0)
        self.say(f"IMU at rest: accelerometer bias {np.round(acc_bias, 3).tolist()} m/s^2, gyro bias "
                 f"{np.round(gyro_bias, 4).tolist()} rad/s (subtracted from every sample)")
        if (np.abs(acc - acc.mean(axis=0)).max() > STILL_ACCEL_SPREAD
                or np.abs(gyro - gyro.mean(axis=0)).max() > STILL_GYRO_SPREAD):
            raise Halt(Stop("refused", "the robot moved during the start-up check: put it down level and keep it "
                                       "still until it stands"))
        worst_acc, worst_gyro = np.abs(acc_bias).max(), np.abs(gyro_bias).max()
        if worst_acc > ACCEL_BIAS_MAX:
            raise Halt(Stop("refused", f"the resting accelerometer is {worst_acc:.2f} m/s^2 ({worst_acc / G:.2f} g) "
                                       f"off level on one axis; the policy was trained with biases up to "
                                       f"{ACCEL_BIAS_MAX} m/s^2: put the robot on a level floor, and check the IMU "
                                       "module's mounting with --imu-check"))
        if worst_gyro > GYRO_BIAS_MAX:
            raise Halt(Stop("refused", f"the resting gyro reads {worst_gyro:.3f} rad/s on one axis; the policy was "
                                       f"trained with biases up to {GYRO_BIAS_MAX} rad/s: keep the robot still "
                                       "during the check (if it was still, this IMU's bias is out of the "
                                       "policy's range)"))
        self.imu_bias = (acc_bias, gyro_bias)
        self._last_sample = None                      # the samples from now on are bias-corrected
        self._pose_gravity = GravityEstimator(self.spec.gravity_alpha, self.dt)
        self._pose_gravity.reset(list(map(float, acc.mean(axis=0) - acc_bias)))

    def warm_up(self) -> None:
        """onnxruntime allocates on its first run: do that before the robot stands, not in its first tick."""
        warm = getattr(self.policy, "warm_up", None)
        if callable(warm):
            self.say(f"policy warmed up (first inference {warm():.1f} ms)")

    def start(self) -> None:
        """Checks, warm-up, lie -> stand, settle, then the first observation (gait clock at phase 0, command =
        stand). A signal or a tilt past the limit during the stand-up or the settling ends it."""
        self.check_start()
        self.warm_up()
        self._moved = True
        self.move_to(self.stand, self.stand_s, watch=True)
        recent: deque[np.ndarray] = deque(maxlen=GRAVITY_INIT_SAMPLES)
        t0 = time.perf_counter()
        for k in range(int(round(self.settle_s / self.dt))):
            self._arm()
            recent.append(self._watch_pose("settling"))
            self._write(self.safety.filter(self.stand))
            self._disarm()
            self._sleep_until(t0 + (k + 1) * self.dt)
        self._check_requests("settling")
        acc, gyro = self.read_imu(time.perf_counter())
        recent.append(acc)
        self.command = self.mapper.to_action(self.safety.command)
        self._poll_commands()
        self.obs = self.builder.reset(np.mean(recent, axis=0), gyro, self.command, self.velocity)

    def _poll_commands(self) -> None:
        """The operator's latest (vx, wz), read once per tick before the observation is built. When the input
        is lost (or the terminal hung up), the command is zero for INPUT_LOSS_BRAKE_S, then the loop stops."""
        if self.commands is None:
            return
        if self._brake is None:
            velocity = self.commands.poll()
            if self.commands.quit:
                raise Halt(Stop("done", "quit by the operator"))
            lost = getattr(self.commands, "lost", None)
            if lost:
                self._start_brake(Stop("safety", f"command input lost ({lost}): zero command for "
                                                 f"{INPUT_LOSS_BRAKE_S} s, then lay down"))
            else:
                self.velocity = velocity
        if self._brake is not None:
            ticks, stop = self._brake
            if ticks <= 0:
                raise Halt(stop)
            self._brake = (ticks - 1, stop)
            self.velocity = (0.0, 0.0)
        if hasattr(self.hw, "set_command"):
            self.hw.set_command(self.velocity)

    def _start_brake(self, stop: Stop) -> None:
        if self._brake is None:
            self._brake = (max(1, int(round(INPUT_LOSS_BRAKE_S / self.dt))), stop)

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
        command_deg = self.safety.filter(self.mapper.to_target_deg(action))
        ok = self._write(command_deg)
        self.command = self.mapper.to_action(self.safety.command)
        if self.safety.intervened and self.safety.interventions == 1:
            self.say("leg-clearance guard: the policy asked for a pose in which a front and a hind leg touch; "
                     "moved it to the nearest safe one (counted, and logged with --log)")
        if self.log is not None:
            self.log["obs"].append(obs.copy())
            self.log["action"].append(np.asarray(action, dtype=np.float32))
            self.log["command_deg"].append(command_deg)
            self.log["guard"].append(self.safety.intervened)
            if "commands" in self.log:
                self.log["commands"].append(self.velocity)
        duration = time.perf_counter() - t0
        self.stats.tick_ms.append(1000 * duration)
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
                name = signal.Signals(self._signal).name
                if self._signal != signal.SIGHUP or self.commands is None:
                    return Stop("signal", f"{name} received")
                self._start_brake(Stop("signal", f"{name} received (the terminal closed): zero command for "
                                                 f"{INPUT_LOSS_BRAKE_S} s, then lay down"))
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
            self._arm()
            self._tick()
            if i % BATTERY_EVERY == BATTERY_EVERY - 1:
                self._check_battery(time.perf_counter())
            self._disarm()
        return Stop("done", "time limit reached")

    def run(self, seconds: float) -> Stop:
        """Start, run the policy for `seconds` (or until a stop), lie down. Returns why it stopped."""
        main = threading.current_thread() is threading.main_thread()
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
        previous = {s: signal.signal(s, self.request_stop) for s in handled} if main else {}
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        restore_priority = self._raise_priority() if self.realtime else None
        if main and self.realtime and self.enforce_timing and not hasattr(self.hw, "teleport_pose"):
            self._watch = _TickWatchdog(TICK_DEADLINE_S)
        try:
            try:
                self.start()
                self.stopped = self._loop(seconds)
            except Halt as halt:
                self.stopped = halt.stop
            except TickHung as hung:
                self.stopped = Stop("safety", str(hung))
            except Exception as exc:  # any failure: lie down first, then report
                self.stopped = Stop("error", f"exception: {type(exc).__name__}: {exc}")
            finally:
                if self._watch is not None:
                    self._watch.close()
                    self._watch = None
            if self._signal is not None and self.stopped.kind == "done":
                self.stopped = Stop("signal", f"{signal.Signals(self._signal).name} received")
            if self._moved:
                self.lie_down()
        except Abort as exc:
            earlier = self.stopped.message + "; " if self.stopped is not None and exc.release else ""
            self.stopped = Stop("aborted", f"{earlier}{exc}")
            if exc.release:
                self.release("the bus hangs")
        finally:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
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
