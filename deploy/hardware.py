"""Hardware interfaces for the runtime: the real PiDog through SunFounder's `pidog` library, and the
MuJoCo model with the same servo and IMU behaviour so the whole runtime is testable without a robot.

Both speak vendor units: `write_legs` takes the 8 leg servo angles in degrees (vendor leg order and
signs), `read_imu` returns (accelerometer m/s^2, gyro rad/s) in the env's body frame (x forward,
y left, z up; an accelerometer at rest reads +9.81 on z).
"""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from pidog_env import robot

G = 9.81
# SH3001 at the ranges the library configures: +-2 g -> 16384 LSB per g (the library's own
# calibration expects -16384 on the chip's x axis at rest); +-2000 deg/s -> 16.4 LSB per deg/s.
ACC_LSB_PER_G = 16384.0
GYRO_LSB_PER_DPS = 16.4
PIDOG_CONF = Path.home() / ".config" / "pidog" / "pidog.conf"


def chip_to_body(v: np.ndarray) -> np.ndarray:
    """SH3001 chip axes (+x down, +y rearward, +z left) -> body axes (x forward, y left, z up)."""
    x, y, z = v
    return np.array([-y, z, -x], dtype=np.float64)


def read_pidog_conf(path: Path = PIDOG_CONF) -> dict[str, list[float]]:
    """Calibration offsets from the robot's pidog.conf (`legs_servo_offset_list = [...]` lines)."""
    out: dict[str, list[float]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key.endswith("servo_offset_list"):
            try:
                out[key] = [float(v) for v in ast.literal_eval(value)]
            except (ValueError, SyntaxError):
                continue
    return out


class Hardware(Protocol):
    def move_to_pose(self, pose_deg: np.ndarray, seconds: float) -> None: ...
    def read_imu(self) -> tuple[np.ndarray, np.ndarray]: ...
    def write_legs(self, servo_deg: np.ndarray) -> None: ...
    def close(self) -> None: ...


class PidogHardware:
    """The physical robot through the official library (imported only here, only when used).

    Each tick writes straight to the leg servos with `legs.servo_write_all` (the library adds the
    pidog.conf calibration offsets and servo directions itself) and keeps `legs.servo_positions` in
    step so later library moves start from the right angles. The library's queued `legs_move` is only
    used for the slow start-up and lie-down moves.
    """

    def __init__(self, dry_run: bool = False) -> None:
        self.dry_run = dry_run
        self.offsets = read_pidog_conf()
        from pidog import Pidog                      # noqa: PLC0415 (the vendor library, on the robot only)
        self.dog = Pidog()                           # moves to the lie pose and starts the IMU thread
        time.sleep(1.2)                              # the IMU calibrates over its first second

    def move_to_pose(self, pose_deg: np.ndarray, seconds: float) -> None:
        if self.dry_run:
            print(f"[dry-run] move to {np.round(pose_deg, 1).tolist()} over {seconds:.1f} s")
            return
        self.dog.legs_move([list(map(float, pose_deg))], immediately=True, speed=60)
        self.dog.wait_legs_done()
        self.dog.legs.servo_positions = list(map(float, pose_deg))

    def read_imu(self) -> tuple[np.ndarray, np.ndarray]:
        acc = chip_to_body(np.asarray(self.dog.accData, dtype=np.float64)) * (G / ACC_LSB_PER_G)
        gyro = chip_to_body(np.asarray(self.dog.gyroData, dtype=np.float64)) * np.deg2rad(1.0 / GYRO_LSB_PER_DPS)
        return acc, gyro

    def write_legs(self, servo_deg: np.ndarray) -> None:
        angles = [float(a) for a in servo_deg]
        if self.dry_run:
            print("[dry-run] legs " + " ".join(f"{a:7.2f}" for a in angles))
            return
        self.dog.legs.servo_write_all(angles)
        self.dog.legs.servo_positions = angles

    def close(self) -> None:
        self.dog.close()


class MujocoHardware:
    """PiDog-v0's physics behind the hardware interface: same servo model, rate limit and IMU.

    `write_legs` advances the simulation one control step; `read_imu` returns the IMU sample the env
    used for its own observation (noise and bias included when randomized), so the runtime's
    observation can be compared element-wise with `last_obs`.
    """

    def __init__(self, randomize: bool = False, seed: int = 0) -> None:
        import gymnasium as gym

        import pidog_env  # noqa: F401
        self.env = gym.make("PiDog-v0", randomize=randomize)
        self.seed = seed
        self.last_obs, self.info = self.env.reset(seed=seed)
        self.base = self.env.unwrapped
        self.terminated = False
        self.poses: list[np.ndarray] = []

    def move_to_pose(self, pose_deg: np.ndarray, seconds: float) -> None:
        # The simulated robot starts each episode standing, so the start-up move to stand is a reset.
        # Other poses (the final lie-down) are not simulated: the episode's last state stays readable.
        self.poses.append(np.asarray(pose_deg, dtype=np.float64).copy())
        if np.allclose(pose_deg, robot.POSES_DEG["stand"]):
            self.last_obs, self.info = self.env.reset(seed=self.seed)
            self.terminated = False

    def read_imu(self) -> tuple[np.ndarray, np.ndarray]:
        imu = np.asarray(self.base.last_imu)
        return imu[:3], imu[3:]

    def write_legs(self, servo_deg: np.ndarray) -> None:
        q = robot.servo_deg_to_model_rad(servo_deg)
        action = robot.leg_rad_to_action(q, self.base.cfg.action_scale_deg).astype(np.float32)
        self.last_obs, _, term, trunc, self.info = self.env.step(action)
        self.terminated = self.terminated or term

    def close(self) -> None:
        self.env.close()
