"""A recording fake of the vendor stack (`robot_hat.Robot`, `pidog.sh3001.Sh3001`, MCU reset, battery) for
tests, `bench/deploy_latency.py` and rehearsing the runtime on a computer (`--hardware fake`).

It behaves like the real libraries where timing and failure matter: a servo write releases the GIL for
~0.45 ms (one SMBus word write at 100 kHz), an IMU block read ~1.4 ms; a failed write returns False (as
the vendor's retry wrapper does); the IMU can stall (the same sample forever) or fail; the battery
voltage is settable; and `start_vendor_threads()` starts what `pidog.Pidog()` would start in the
caller's process, including an ultrasonic thread that spins holding the GIL. Every bus access is
recorded in `events` in order, with the time, and the last angle written to each leg servo is kept.
Nothing here touches hardware.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
from typing import Callable

import numpy as np

from deploy.vendor import SERVO_FRAME_US, SERVO_MAX_US, SERVO_MIN_US, SERVO_PERIOD, VendorStack, body_to_chip
from pidog_env import robot
from pidog_env.observation import GRAVITY as G

ACC_LSB_PER_G = {0x02: 2048.0, 0x03: 4096.0, 0x04: 8192.0, 0x05: 16384.0}    # SH3001 range code -> LSB/g


def still_level(t: float) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """A robot standing still and level: body-frame accelerometer (m/s^2) and gyro (rad/s)."""
    return (0.0, 0.0, G), (0.0, 0.0, 0.0)


class FakeVendor:
    """One fake robot: its bus, IMU world and faults. `stack()` gives the `VendorStack` the runtime takes."""

    def __init__(self, write_s: float = 0.00045, imu_read_s: float = 0.0014, battery_v: float = 8.0,
                 world: Callable[[float], tuple] = still_level, startup_sleep_scale: float = 0.0,
                 seed: int = 0) -> None:
        self.write_s, self.imu_read_s, self.battery_v, self.world = write_s, imu_read_s, battery_v, world
        self.startup_sleep_scale = startup_sleep_scale     # 0: the vendor's 0.15 s start-up pauses are skipped
        self.events: list[tuple] = []
        self.t0 = time.perf_counter()
        self.rng = np.random.default_rng(seed)
        self.fail_writes = False          # every servo write fails (returns False)
        self.hang_writes = False          # every servo write blocks (an I2C bus that hangs)
        self.imu_stalled = False          # the IMU returns the same sample forever
        self.imu_failing = False          # the IMU read fails
        self.leg_deg = np.full(robot.N_LEG, np.nan)       # last angle written to each leg servo (vendor degrees)
        self.robots: dict[str, FakeRobot] = {}
        self._last_imu: tuple | None = None
        self._threads_stop: threading.Event | None = None

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def record(self, *event) -> None:
        self.events.append((*event, self.now()))

    def stack(self) -> VendorStack:
        return VendorStack(Robot=functools.partial(FakeRobot, self), Sh3001=functools.partial(FakeSh3001, self),
                           reset_mcu=lambda: self.record("reset_mcu"), battery_voltage=self.read_battery,
                           versions=dict(robot.TESTED_VENDOR_VERSIONS), sleep=self.sleep)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.startup_sleep_scale)

    def read_battery(self) -> float:
        self.record("battery")
        time.sleep(0.0003)
        return float(self.battery_v)

    # ------------------------------------------------------------------ what Pidog() would start
    def start_vendor_threads(self) -> None:
        """Threads `pidog.Pidog()` starts in the calling process: an ultrasonic reader that busy-waits
        holding the GIL (released only when the interpreter forces a switch), and an IMU thread that
        samples every 50 ms."""
        stop = self._threads_stop = threading.Event()

        def ultrasonic() -> None:
            while not stop.is_set():
                for _ in range(2000):     # pure-Python spin: holds the GIL until the switch interval expires
                    pass

        def imu() -> None:
            while not stop.wait(0.05):
                pass

        for name, target in (("ultrasonic_thread", ultrasonic), ("imu_thread", imu)):
            threading.Thread(target=target, name=name, daemon=True).start()

    def stop_vendor_threads(self) -> None:
        if self._threads_stop is not None:
            self._threads_stop.set()


class FakeServo:
    """robot_hat.Servo as far as the runtime uses it: a PWM channel register written over I2C."""

    REG_CHN = 0x20

    def __init__(self, vendor: FakeVendor, channel: int) -> None:
        self.vendor, self.channel = vendor, channel

    def _write_word_data(self, reg: int, data: int):
        v = self.vendor
        if v.hang_writes:
            v.record("write_hang", self.channel)
            time.sleep(3600)
        time.sleep(v.write_s)                            # smbus2 ioctl: the GIL is released meanwhile
        if v.fail_writes:
            v.record("write_failed", self.channel)
            return False
        value = ((data & 0xFF) << 8) | (data >> 8)
        v.record("write", self.channel, value)
        if self.channel in robot.LEG_PINS:
            pulse_us = value / SERVO_PERIOD * SERVO_FRAME_US
            angle = (pulse_us - SERVO_MIN_US) * 180.0 / (SERVO_MAX_US - SERVO_MIN_US) - 90.0
            v.leg_deg[robot.LEG_PINS.index(self.channel)] = angle
        return None

    def angle(self, angle: float) -> None:
        from deploy.vendor import servo_register_value
        value = servo_register_value(angle)
        self._write_word_data(self.REG_CHN + self.channel, ((value & 0xFF) << 8) | (value >> 8))


class FakeRobot:
    """robot_hat.Robot: offsets from the config file, and the one-by-one move to `init_angles`."""

    def __init__(self, vendor: FakeVendor, pin_list, db: str = "", name: str | None = None, init_angles=None,
                 init_order=None) -> None:
        from deploy.vendor import read_pidog_conf
        from pathlib import Path
        self.name = name or "other"
        n = len(pin_list)
        self.offset = read_pidog_conf(Path(db)).get(f"{self.name}_servo_offset_list", [0.0] * n) if db else [0.0] * n
        self.direction, self.origin_positions = [1] * n, [0] * n
        self.servo_list = [FakeServo(vendor, p) for p in pin_list]
        self.servo_positions = list(init_angles or [0.0] * n)
        vendor.record("robot_init", self.name)
        vendor.robots[self.name] = self
        for i in (init_order or range(n)):
            self.servo_list[i].angle(self.offset[i] + self.servo_positions[i])
            vendor.sleep(0.15)

    def servo_write_all(self, angles) -> None:
        for i, servo in enumerate(self.servo_list):
            servo.angle(self.direction[i] * (self.origin_positions[i] + angles[i] + self.offset[i]))


class FakeSh3001:
    """pidog.sh3001.Sh3001 without a thread: configuration and the 12-byte block read (`mem_read`)."""

    SH3001_ACC_XL = 0x00
    SH3001_ODR_500HZ = 0x01
    SH3001_ACC_RANGE_16G, SH3001_ACC_RANGE_8G, SH3001_ACC_RANGE_4G, SH3001_ACC_RANGE_2G = 0x02, 0x03, 0x04, 0x05
    SH3001_ACC_ODRX025 = 0x20
    SH3001_ACC_FILTER_EN = 0x00

    def __init__(self, vendor: FakeVendor, db: str = "") -> None:
        self.vendor = vendor
        self.range_code = self.SH3001_ACC_RANGE_2G               # the vendor's own configuration
        vendor.record("imu_init")

    def sh3001_acc_config(self, odr: int, acc_range: int, cutoff: int, filter_enable: int) -> None:
        self.range_code = acc_range
        self.vendor.record("imu_config", acc_range)

    def mem_read(self, length: int, reg: int):
        """robot_hat's I2C.mem_read: the register bytes, or False when the read failed (after its retries)."""
        data = self._sample() if reg == self.SH3001_ACC_XL and length == 12 else False
        if data is False:
            return False
        acc, gyro = data
        return list(struct.pack("<6h", *acc, *gyro))

    def _sample(self):
        v = self.vendor
        time.sleep(v.imu_read_s)
        v.record("imu")
        if v.imu_failing:
            return False
        if v.imu_stalled and v._last_imu is not None:
            acc, gyro = v._last_imu
            return list(acc), list(gyro)
        acc_body, gyro_body = v.world(v.now())
        lsb_g = ACC_LSB_PER_G[self.range_code]
        noise = v.rng.integers(-3, 4, 6)
        acc = [int(np.clip(round(a / G * lsb_g) + n, -32768, 32767)) for a, n in zip(body_to_chip(acc_body), noise)]
        gyro = [int(np.clip(round(np.rad2deg(w) * robot.IMU_GYRO_LSB_PER_DPS) + n, -32768, 32767))
                for w, n in zip(body_to_chip(gyro_body), noise[3:])]
        v._last_imu = (acc, gyro)
        return list(acc), list(gyro)
