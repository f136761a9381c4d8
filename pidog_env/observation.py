"""The policy observation, built identically by the simulator and the robot runtime (numpy only).

Layout of one frame (all entries of order 1):

| name          | size | meaning                                                         | scale          |
|---------------|------|-----------------------------------------------------------------|----------------|
| gravity       | 3    | gravity direction in the body frame (gyro + accel filter)       | unit vector    |
| gyro          | 3    | body angular velocity (IMU gyro)                                | rad/s * 0.25   |
| last_action   | 8    | last commanded leg targets, normalized joint angles             | [-1, 1]        |
| clock         | 2    | sin, cos of 2*pi*gait phase                                     | [-1, 1]        |
| command       | 2    | (optional) commanded forward speed vx, yaw rate wz               | x 8, x 2       |
| ultrasonic    | 1    | (optional) forward distance, 1.0 when nothing within 2.9 m      | m / 2.9        |

With `history = K`, the K previous frames (newest first) follow the current one.
"""

from __future__ import annotations

import math

import numpy as np

from pidog_env.robot import N_LEG, ULTRASONIC_MAX_RANGE

GYRO_SCALE = 0.25
CMD_VX_SCALE = 8.0                       # commanded forward speed, m/s x 8 (0.12 m/s -> ~1)
CMD_WZ_SCALE = 2.0                       # commanded yaw rate, rad/s x 2 (0.5 rad/s -> 1)
OBS_CLIP = 10.0
GRAVITY = 9.81                           # m/s^2: the one value the env, the runtime and the fakes use
# The gravity filter's accelerometer weight per control step (`GravityEstimator`): the accelerometer
# path removes the gyro's drift over ~dt/alpha = 0.5 s at 50 Hz. Env and runtime both use this value.
GRAVITY_ALPHA = 0.04



def frame_layout(ultrasonic: bool, command: bool = False) -> dict[str, slice]:
    """Name -> slice of one observation frame."""
    sizes = [("gravity", 3), ("gyro", 3), ("last_action", N_LEG), ("clock", 2)]
    if command:
        sizes.append(("command", 2))
    if ultrasonic:
        sizes.append(("ultrasonic", 1))
    layout, start = {}, 0
    for name, size in sizes:
        layout[name] = slice(start, start + size)
        start += size
    return layout


def frame_size(ultrasonic: bool, command: bool = False) -> int:
    return max(s.stop for s in frame_layout(ultrasonic, command).values())


# Where `build_frame` writes: `frame_layout`'s offsets (the optional command comes before the ultrasonic entry).
_AT = {name: s.start for name, s in frame_layout(ultrasonic=True, command=True).items()}
_GRAVITY_AT, _GYRO_AT, _ACTION_AT, _CLOCK_AT, _COMMAND_AT = (
    _AT[k] for k in ("gravity", "gyro", "last_action", "clock", "command"))
_COMMAND_SIZE = _AT["ultrasonic"] - _COMMAND_AT


class GravityEstimator:
    """Gravity direction in the body frame from the IMU: a complementary filter.

    The gyro propagates the estimate (a world-fixed vector seen from the body obeys dg/dt = -w x g);
    each step it is pulled by `alpha` towards the accelerometer's direction (-accel / |accel|, since at
    rest an accelerometer reads +g upward). Accelerometer-only estimates are dominated by the body's
    own accelerations on a trotting PiDog (error std ~0.1 vs a tilt signal of ~0.05); the gyro path is
    smooth and the accelerometer path removes its drift over ~dt/alpha seconds.
    """

    def __init__(self, alpha: float, dt: float) -> None:
        self.alpha, self.dt = alpha, dt
        self.g = (0.0, 0.0, -1.0)

    @property
    def state(self) -> np.ndarray:
        return np.array(self.g)

    def reset(self, accel) -> tuple[float, float, float]:
        ax, ay, az = accel
        norm = math.sqrt(ax * ax + ay * ay + az * az)
        self.g = (-ax / norm, -ay / norm, -az / norm) if norm > 1e-6 else (0.0, 0.0, -1.0)
        return self.g

    def __call__(self, accel, gyro) -> tuple[float, float, float]:
        """One control step; `accel` and `gyro` are 3 floats each (lists are fastest)."""
        # Scalar arithmetic: this runs every control step and numpy's small-array overhead dominates.
        gx, gy, gz = self.g
        wx, wy, wz = gyro
        dt = self.dt
        gx, gy, gz = (gx - dt * (wy * gz - wz * gy), gy - dt * (wz * gx - wx * gz), gz - dt * (wx * gy - wy * gx))
        ax, ay, az = accel
        norm = math.sqrt(ax * ax + ay * ay + az * az)
        if norm > 1e-6:
            k = self.alpha
            gx += k * (-ax / norm - gx)
            gy += k * (-ay / norm - gy)
            gz += k * (-az / norm - gz)
        inv = 1.0 / math.sqrt(gx * gx + gy * gy + gz * gz)
        self.g = (gx * inv, gy * inv, gz * inv)
        return self.g


def ultrasonic_feature(distance_m: float) -> float:
    """Scaled ultrasonic reading; a timeout (-1, or nothing in range) reads as the maximum range."""
    if distance_m < 0 or distance_m > ULTRASONIC_MAX_RANGE:
        return 1.0
    return distance_m / ULTRASONIC_MAX_RANGE


def build_frame(out: np.ndarray, gravity, gyro, last_action: np.ndarray,
                phase: float, ultrasonic: float | None = None,
                command: tuple[float, float] | None = None) -> np.ndarray:
    """Fill `out` (one frame) in the layout of `frame_layout`; returns `out`.

    `gravity` and `gyro` are 3 floats each (rad/s for the gyro; scaled here); `command` is (vx m/s,
    wz rad/s), scaled here."""
    # Gravity is a unit vector and the action and clock lie in [-1, 1]; only the gyro needs clipping.
    g, w, c = _GRAVITY_AT, _GYRO_AT, _CLOCK_AT
    out[g], out[g + 1], out[g + 2] = gravity
    wx, wy, wz = gyro
    out[w] = min(max(wx * GYRO_SCALE, -OBS_CLIP), OBS_CLIP)
    out[w + 1] = min(max(wy * GYRO_SCALE, -OBS_CLIP), OBS_CLIP)
    out[w + 2] = min(max(wz * GYRO_SCALE, -OBS_CLIP), OBS_CLIP)
    out[_ACTION_AT:_ACTION_AT + N_LEG] = last_action
    angle = 2.0 * math.pi * phase
    out[c] = math.sin(angle)
    out[c + 1] = math.cos(angle)
    i = _COMMAND_AT
    if command is not None:
        out[i] = command[0] * CMD_VX_SCALE
        out[i + 1] = command[1] * CMD_WZ_SCALE
        i += _COMMAND_SIZE
    if ultrasonic is not None:
        out[i] = ultrasonic_feature(ultrasonic)
    return out


class ObservationStack:
    """Current frame followed by `history` past frames (newest first), as one flat vector."""

    def __init__(self, frame: int, history: int) -> None:
        self.frame, self.history = frame, history
        self.buffer = np.zeros(frame * (history + 1), dtype=np.float64)

    def reset(self, first: np.ndarray) -> np.ndarray:
        self.buffer[:] = np.tile(first, self.history + 1)
        return self.buffer.astype(np.float32)

    def push(self, frame: np.ndarray) -> np.ndarray:
        if not self.history:
            return frame.astype(np.float32)           # the frame is all there is (a new array, as below)
        self.buffer[self.frame:] = self.buffer[:-self.frame]
        self.buffer[:self.frame] = frame
        return self.buffer.astype(np.float32)
