"""Hardware behind the runtime: the real PiDog (through `deploy.vendor`, no vendor threads), a dry run that
moves nothing, and the MuJoCo model with the robot's IMU timing, so the whole runtime is testable
without a robot.

All speak vendor units: `write_legs` takes the 8 leg servo angles in degrees (vendor leg order and
signs) and returns False when a servo write failed; `read_imu` returns a new (accelerometer m/s^2,
gyro rad/s) sample in the env's body frame (x forward, y left, z up; at rest the accelerometer reads
+9.81 on z), or None when the read failed or the chip returned the previous sample again (stalled);
`battery_voltage` returns volts or None when there is no battery to read; `release` lets the servos go
limp where the hardware can (the HAT MCU's reset pin: the fallback when the I2C bus is dead).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from deploy.vendor import VendorStack, chip_to_body, decode_imu_block, read_pidog_conf, write_servo
from pidog_env import robot
from pidog_env.observation import GRAVITY as G

ImuSample = tuple[np.ndarray, np.ndarray]
from pidog_env import ENV_ID               # the simulated robot: the id `import pidog_env` registers with gymnasium


class Hardware(Protocol):
    def read_imu(self) -> ImuSample | None: ...
    def write_legs(self, servo_deg: np.ndarray) -> bool: ...
    def battery_voltage(self) -> float | None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


class RobotHardware:
    """The physical robot: the vendor's Robot/Sh3001 classes, built the way `Pidog()` builds them, minus
    its threads (see `deploy.vendor`). Constructing it resets the HAT and moves the legs to the lie pose."""

    def __init__(self, vendor: VendorStack, conf: Path) -> None:
        self.vendor, self.conf = vendor, conf
        self.offsets = read_pidog_conf(conf)
        sleep = vendor.sleep or time.sleep
        vendor.reset_mcu()
        sleep(0.2)
        db = str(conf)
        self.legs = vendor.Robot(pin_list=list(robot.LEG_PINS), name="legs", init_angles=robot.POSES_DEG["lie"].tolist(),
                                 init_order=list(robot.LEG_INIT_ORDER), db=db)
        self.head = vendor.Robot(pin_list=list(robot.HEAD_PINS), name="head", init_angles=list(robot.HEAD_INIT_DEG), db=db)
        self.tail = vendor.Robot(pin_list=list(robot.TAIL_PINS), name="tail", init_angles=[0.0], db=db)
        self.imu = vendor.Sh3001(db=db)
        imu = self.imu
        imu.sh3001_acc_config(imu.SH3001_ODR_500HZ, imu.SH3001_ACC_RANGE_8G, imu.SH3001_ACC_ODRX025,
                              imu.SH3001_ACC_FILTER_EN)
        self._acc_scale = G / robot.IMU_ACCEL_LSB_PER_G
        self._gyro_scale = np.deg2rad(1.0 / robot.IMU_GYRO_LSB_PER_DPS)
        self._last_raw: tuple | None = None

    def read_imu(self) -> ImuSample | None:
        # One 12-byte block read through robot_hat's I2C (5 retries; False on an I2C error), decoded here.
        data = decode_imu_block(self.imu.mem_read(12, self.imu.SH3001_ACC_XL))
        if data is None:
            return None
        acc, gyro = data
        raw = (*acc, *gyro)
        if raw == self._last_raw:                         # a live chip's noise changes some bit every sample
            return None
        self._last_raw = raw
        return chip_to_body(acc) * self._acc_scale, chip_to_body(gyro) * self._gyro_scale

    def write_legs(self, servo_deg: np.ndarray) -> bool:
        legs, ok = self.legs, True
        for i, servo in enumerate(legs.servo_list):
            ok = write_servo(servo, legs.direction[i] * (legs.origin_positions[i] + float(servo_deg[i]) + legs.offset[i])) and ok
        legs.servo_positions = [float(a) for a in servo_deg]     # the library's record, for its own later moves
        return ok

    def battery_voltage(self) -> float | None:
        return self.vendor.battery_voltage()

    def applied_offsets(self) -> dict[str, list[float]]:
        """The offsets the vendor's Robot objects hold, i.e. the ones added to every command."""
        return {f"{name}_servo_offset_list": [float(v) for v in part.offset]
                for name, part in (("legs", self.legs), ("head", self.head), ("tail", self.tail))}

    def offset_problem(self) -> str | None:
        """None when the vendor applies the offsets the calibration file holds; else why not, in one line."""
        applied = self.applied_offsets()
        for key, offsets in self.offsets.items():
            if key in applied and applied[key] != [float(v) for v in offsets]:
                return (f"the vendor library applies {key} {applied[key]} but {self.conf} holds {offsets}: its "
                        "reader skips the file's last line; end the file with an empty line")
        return None

    def describe(self) -> list[str]:
        lines = [f"vendor: pidog {self.vendor.versions.get('pidog', '?')}, robot_hat {self.vendor.versions.get('robot_hat', '?')}"]
        return lines + describe_offsets(self.applied_offsets(), self.conf, "applied by the vendor library, from")

    def release(self) -> None:
        """Reset the HAT's MCU through its reset pin (a GPIO, not the I2C bus): the servos get no pulse and go limp."""
        self.vendor.reset_mcu()

    def close(self) -> None:
        signal.alarm(0)                                   # nothing of the vendor's may leave an alarm armed


def describe_offsets(offsets: dict[str, list[float]], conf: Path, source: str = "from") -> list[str]:
    legs = offsets.get("legs_servo_offset_list")
    if legs is None:
        return [f"warning: {conf} has no legs_servo_offset_list: the servos are uncalibrated (run SunFounder's "
                "calibration first)"]
    lines = [f"servo offsets (deg, {source} {conf}): legs {legs}, head {offsets.get('head_servo_offset_list')}, "
             f"tail {offsets.get('tail_servo_offset_list')}"]
    if not any(legs):
        lines.append("warning: every leg servo offset is zero: has this robot been calibrated?")
    return lines


class DryRunHardware:
    """Moves nothing and constructs no vendor object: prints the commands, feeds a still, level IMU."""

    def __init__(self, conf: Path, print_every: int = 1) -> None:
        self.conf, self.print_every, self.writes = conf, print_every, 0
        self._rng = np.random.default_rng(0)

    def read_imu(self) -> ImuSample | None:
        return np.array([0.0, 0.0, G]) + self._rng.normal(0, 0.02, 3), self._rng.normal(0, 0.002, 3)

    def write_legs(self, servo_deg: np.ndarray) -> bool:
        if self.writes % self.print_every == 0:
            print("[dry-run] legs " + " ".join(f"{a:7.2f}" for a in servo_deg))
        self.writes += 1
        return True

    def battery_voltage(self) -> float | None:
        return None

    def release(self) -> None:
        print("[dry-run] release the servos (HAT MCU reset)")

    def describe(self) -> list[str]:
        return ["dry run: no vendor library is loaded and nothing moves"] + describe_offsets(read_pidog_conf(self.conf), self.conf)

    def close(self) -> None:
        pass


class MujocoHardware:
    """The PiDog env's physics behind the hardware interface: same servo model, rate limit and IMU.

    `imu_timing="robot"` (default) keeps the env's model of the runtime's IMU timing (a sample one physics
    step old, randomized over 0-2 steps with `randomize`); `"ideal"` gives a fresh sample at the end of
    every control step. `write_legs` advances the simulation one control step; `read_imu` returns the IMU
    sample the env used for its own observation, so the runtime's observation can be compared
    element-wise with `last_obs`. The simulated robot cannot lie down or stand up (an episode starts
    standing), so pose moves jump: `teleport_pose(stand)` resets the episode.
    """

    def __init__(self, randomize: bool = False, seed: int = 0, imu_timing: str = "robot", config=None) -> None:
        import gymnasium as gym

        import pidog_env  # noqa: F401
        from pidog_env import config_tree
        from pidog_env.config import EnvConfig
        if imu_timing not in ("robot", "ideal"):
            raise ValueError(f"imu_timing must be 'robot' or 'ideal', got {imu_timing!r}")
        cfg = config or EnvConfig()
        if imu_timing == "ideal":
            cfg = config_tree.apply(cfg, "randomization.imu_delay_substeps", (0, 0))
        self.env = gym.make(ENV_ID, config=cfg, randomize=randomize)
        self.seed = seed
        self.last_obs, self.info = self.env.reset(seed=seed)
        self.base = self.env.unwrapped
        self.terminated = False
        self.fall_cause = ""          # the env's `fall_cause` on the step the episode first ended
        self.poses: list[np.ndarray] = []

    def teleport_pose(self, pose_deg: np.ndarray) -> None:
        self.poses.append(np.asarray(pose_deg, dtype=np.float64).copy())
        if np.allclose(pose_deg, robot.POSES_DEG["stand"]):
            self.last_obs, self.info = self.env.reset(seed=self.seed)
            self.terminated, self.fall_cause = False, ""

    def set_command(self, velocity: tuple[float, float]) -> None:
        """The operator's (vx, wz), so the simulated episode's tracking figures use it (command task)."""
        if self.base.command is not None:
            self.base.set_command(*velocity)

    def read_imu(self) -> ImuSample | None:
        imu = np.asarray(self.base.last_imu)
        return imu[:3], imu[3:]

    def write_legs(self, servo_deg: np.ndarray) -> bool:
        q = robot.servo_deg_to_model_rad(servo_deg)
        action = robot.leg_rad_to_action(q, self.base.cfg.action_scale_deg).astype(np.float32)
        self.last_obs, _, term, trunc, self.info = self.env.step(action)
        if term and not self.terminated:      # the robot keeps being stepped after a fall: keep the first cause
            self.fall_cause = self.info.get("fall_cause", "")
        self.terminated = self.terminated or term
        return True

    def battery_voltage(self) -> float | None:
        return None

    def release(self) -> None:
        pass

    def describe(self) -> list[str]:
        return [f"simulated robot (MuJoCo {ENV_ID})"]

    def close(self) -> None:
        self.env.close()
