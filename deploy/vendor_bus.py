"""SunFounder's own pidog / robot-hat Python code, run off the robot over an emulated I2C bus.

The vendor libraries reach the hardware through `smbus2.SMBus` and a few shell tools: `i2cdetect` (every
PWM, ADC and IMU object scans the bus), `pinctrl` (the HAT MCU's reset pin), `sudo chmod/chown` (on the
calibration file) and `getent passwd` (the user's home). `VendorEmulation` provides all of them:

* `HatMcu` (0x14), the Robot HAT's microcontroller: PWM prescaler, period and pulse registers (every
  channel write recorded with its time; a reset through the reset pin clears them, the servos go limp)
  and the ADC (A4: the battery through its divider, read x3);
* `Sh3001Chip` (0x36), the IMU: identity and configuration registers, and the 12 data bytes from a world
  function (body-frame accelerometer m/s^2 and gyro rad/s, e.g. MuJoCo's IMU via `MujocoWorld`), in the
  ranges the configuration registers select, with a little noise as a live chip has;
* faults: failing writes or reads on a device (smbus2's OSError, for a number of transfers or for good),
  a stuck IMU, a dead bus, a hanging bus;
* fake `smbus2`, `smbus`, `lgpio`, `spidev` and `pyaudio` modules and a bin folder with the shell tools,
  first on PATH while the emulation is loaded; transfers can take the time they take at 100 kHz.

`VendorEmulation.load()` imports the unmodified vendor packages from a folder holding `robot-hat/` and
`pidog/` (../shared/vendor) and returns the `VendorStack` that `deploy.vendor.load_vendor` builds from
them; `close()` unloads them. For tests and `bench/deploy_latency.py`; the robot never imports this.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import struct
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Callable

import numpy as np

from deploy.vendor import VendorStack, body_to_chip, load_vendor
from pidog_env import robot
from pidog_env.observation import GRAVITY as G

HAT_ADDRESS, IMU_ADDRESS = 0x14, 0x36
MCU_RESET_PIN = 5                              # robot_hat.device.PIN["MCURST"]
SH3001_CHIP_ID = 0x61
ACC_CONF2, GYRO_CONF3 = 0x25, 0x8F             # SH3001 range registers (accelerometer; gyro x, as y and z)
ACC_LSB_PER_G = {0x02: 2048.0, 0x03: 4096.0, 0x04: 8192.0, 0x05: 16384.0}
GYRO_RANGE_DPS = {0x02: 125.0, 0x03: 250.0, 0x04: 500.0, 0x05: 1000.0, 0x06: 2000.0}
PWM_CHANNEL_REG = 0x20                         # + channel (0-19)
ADC_REG = 0x10                                 # | (7 - ADC channel)
BATTERY_ADC_CHANNEL = 4                        # A4, behind a 1/3 divider
SERVO_FRAME_US, SERVO_PERIOD = 20000.0, 4095   # robot_hat.Servo: 20 ms frames of 4095 counts
BYTE_S_100KHZ = 9 / 100e3                      # one byte on a 100 kHz I2C bus (8 bits and the acknowledge)
VENDOR_MODULES = ("robot_hat", "pidog")
FAKE_MODULES = ("smbus2", "smbus", "lgpio", "spidev", "pyaudio")
Sample = tuple[tuple[float, float, float], tuple[float, float, float]]


def still_level(t: float) -> Sample:
    return (0.0, 0.0, G), (0.0, 0.0, 0.0)


def pulse_to_servo_deg(value: int) -> float:
    """A PWM channel register value -> the angle robot_hat's Servo.angle wrote it for (0.44 deg steps)."""
    pulse_us = value / SERVO_PERIOD * SERVO_FRAME_US
    return (pulse_us - 500.0) * 180.0 / 2000.0 - 90.0


class Device:
    """Fault switches shared by the emulated chips: `fail_writes` / `fail_reads` make that many of the
    next transfers raise OSError (-1: all of them)."""

    def __init__(self) -> None:
        self.fail_writes = 0
        self.fail_reads = 0

    def _maybe_fail(self, kind: str) -> None:
        left = getattr(self, f"fail_{kind}")
        if left:
            if left > 0:
                setattr(self, f"fail_{kind}", left - 1)
            raise OSError(errno.EREMOTEIO, f"Remote I/O error (emulated {kind[:-1]} failure)")


class HatMcu(Device):
    """The Robot HAT's microcontroller at 0x14: PWM registers and the ADC."""

    def __init__(self, battery_v: float = 8.0) -> None:
        super().__init__()
        self.battery_v = battery_v
        self.registers: dict[int, int] = {}
        self.pulses: dict[int, int] = {}                   # channel -> register value (absent: no pulse)
        self.writes: list[tuple[float, int, int]] = []      # (time, channel, value) of every channel write
        self.resets = 0
        self._adc_channel = 0
        self._adc_bytes: list[int] = []

    def reset(self) -> None:
        """The reset pin: registers cleared, no pulse on any channel (the servos go limp)."""
        self.resets += 1
        self.registers.clear()
        self.pulses.clear()

    def write_word(self, t: float, reg: int, data: int) -> None:
        self._maybe_fail("writes")
        value = ((data & 0xFF) << 8) | (data >> 8)          # smbus sends the low byte first: robot_hat's high byte
        if ADC_REG <= reg < ADC_REG + 8:
            self._adc_channel = 7 - (reg - ADC_REG)
            raw = int(round(self.adc_volts(self._adc_channel) / 3.3 * 4095)) if self._adc_channel == BATTERY_ADC_CHANNEL else 0
            raw = min(max(raw, 0), 4095)
            self._adc_bytes = [raw >> 8, raw & 0xFF]
            return
        self.registers[reg] = value
        if PWM_CHANNEL_REG <= reg < PWM_CHANNEL_REG + 20:
            channel = reg - PWM_CHANNEL_REG
            self.pulses[channel] = value
            self.writes.append((t, channel, value))

    def adc_volts(self, channel: int) -> float:
        return self.battery_v / 3.0 if channel == BATTERY_ADC_CHANNEL else 0.0

    def read_byte(self) -> int:
        self._maybe_fail("reads")
        return self._adc_bytes.pop(0) if self._adc_bytes else 0

    def servo_deg(self, channel: int) -> float | None:
        """The angle the last pulse on `channel` stands for (the vendor's offset included), None when limp."""
        value = self.pulses.get(channel)
        return None if value is None else pulse_to_servo_deg(value)


class Sh3001Chip(Device):
    """The SH3001 IMU at 0x36: register file, and the 12 data bytes from `world(t)` in the configured ranges."""

    def __init__(self, world: Callable[[float], Sample] = still_level, noise_lsb: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.world = world
        self.noise_lsb = noise_lsb
        self.rng = np.random.default_rng(seed)
        self.stuck = False                                  # serve the same data bytes forever
        self.raw: tuple[int, ...] | None = None             # six raw words to serve instead of the world's (tests)
        self.registers = bytearray(256)
        self.registers[0x0F] = SH3001_CHIP_ID
        self.reads = 0
        self._last: list[int] | None = None

    def write_block(self, reg: int, data: list[int]) -> None:
        self._maybe_fail("writes")
        for i, b in enumerate(data):
            self.registers[(reg + i) & 0xFF] = b & 0xFF

    def read_block(self, t: float, reg: int, n: int) -> list[int]:
        self._maybe_fail("reads")
        if reg == 0x00 and n == 12:
            self.reads += 1
            return self._data(t)
        return [self.registers[(reg + i) & 0xFF] for i in range(n)]

    def _data(self, t: float) -> list[int]:
        if self.stuck and self._last is not None:
            return list(self._last)
        if self.raw is not None:
            words = list(self.raw)
        else:
            acc, gyro = self.world(t)
            lsb_g = ACC_LSB_PER_G.get(self.registers[ACC_CONF2], 16384.0)
            lsb_dps = 32768.0 / GYRO_RANGE_DPS.get(self.registers[GYRO_CONF3], 2000.0)
            noise = self.rng.integers(-self.noise_lsb, self.noise_lsb + 1, 6) if self.noise_lsb else np.zeros(6, int)
            words = [round(a / G * lsb_g) for a in body_to_chip(acc)]
            words += [round(np.rad2deg(w) * lsb_dps) for w in body_to_chip(gyro)]
            words = [int(min(max(w + n, -32768), 32767)) for w, n in zip(words, noise)]
        self._last = list(struct.pack("<6h", *words))
        return list(self._last)


class EmulatedBus:
    """I2C bus 1: routes smbus2 transfers to the chips; `dead` fails every transfer, `hang` blocks them
    (a signal still interrupts the wait, as it does a stuck ioctl); `byte_s` is the time per byte."""

    def __init__(self, mcu: HatMcu, imu: Sh3001Chip, byte_s: float = 0.0) -> None:
        self.mcu, self.imu, self.byte_s = mcu, imu, byte_s
        self.devices = {HAT_ADDRESS: mcu, IMU_ADDRESS: imu}
        self.dead = False
        self.hang = False
        self.transfers = 0
        self.t0 = time.perf_counter()
        self.on_transfer: Callable[[], None] | None = None   # the reset-pin log is read before each transfer

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def _transfer(self, address: int, nbytes: int):
        if self.on_transfer is not None:
            self.on_transfer()
        self.transfers += 1
        while self.hang:
            time.sleep(0.05)
        if self.byte_s:
            time.sleep(nbytes * self.byte_s)                # the ioctl: the GIL is released meanwhile
        device = self.devices.get(address)
        if self.dead or device is None:
            raise OSError(errno.EREMOTEIO, "Remote I/O error (emulated bus)")
        return device


class FakeSMBus:
    """smbus2.SMBus over an `EmulatedBus`: the calls robot_hat's I2C class makes."""

    bus: EmulatedBus                                       # set on the class the emulation builds

    def __init__(self, bus: int | None = None, force: bool = False) -> None:
        self.number = bus

    def close(self) -> None:
        pass

    def write_byte(self, i2c_addr: int, value: int, force=None) -> None:
        self.bus._transfer(i2c_addr, 2)._maybe_fail("writes")

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force=None) -> None:
        device = self.bus._transfer(i2c_addr, 3)
        if isinstance(device, Sh3001Chip):
            device.write_block(register, [value])
        else:
            device._maybe_fail("writes")

    def write_word_data(self, i2c_addr: int, register: int, value: int, force=None) -> None:
        device = self.bus._transfer(i2c_addr, 4)
        if isinstance(device, HatMcu):
            device.write_word(self.bus.now(), register, value)
        else:
            device.write_block(register, [value & 0xFF, value >> 8])

    def write_i2c_block_data(self, i2c_addr: int, register: int, data, force=None) -> None:
        device = self.bus._transfer(i2c_addr, 2 + len(data))
        if isinstance(device, Sh3001Chip):
            device.write_block(register, list(data))
        else:
            device._maybe_fail("writes")

    def read_byte(self, i2c_addr: int, force=None) -> int:
        device = self.bus._transfer(i2c_addr, 2)
        if isinstance(device, HatMcu):
            return device.read_byte()
        device._maybe_fail("reads")
        return 0

    def read_byte_data(self, i2c_addr: int, register: int, force=None) -> int:
        return self.read_i2c_block_data(i2c_addr, register, 1)[0]

    def read_word_data(self, i2c_addr: int, register: int, force=None) -> int:
        low, high = self.read_i2c_block_data(i2c_addr, register, 2)
        return low | high << 8

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force=None) -> list[int]:
        device = self.bus._transfer(i2c_addr, 3 + length)
        if isinstance(device, Sh3001Chip):
            return device.read_block(self.bus.now(), register, length)
        device._maybe_fail("reads")
        return [0] * length


class _ScaledTime(types.ModuleType):
    """The `time` module with `sleep` scaled: the vendor's start-up pauses (0.15 s per servo) in tests."""

    def __init__(self, scale: float) -> None:
        super().__init__("time")
        self._scale = scale

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self._scale)


def _script(path: Path, text: str) -> None:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class VendorEmulation:
    """The emulated robot for the real vendor code: chips, bus, fake modules and shell tools."""

    def __init__(self, vendor_root: str | Path, world: Callable[[float], Sample] = still_level,
                 battery_v: float = 8.0, byte_s: float = 0.0, sleep_scale: float = 0.0, seed: int = 0,
                 users: dict[str, str] | None = None) -> None:
        self.vendor_root = Path(vendor_root)
        for part in ("robot-hat/robot_hat", "pidog/pidog"):
            if not (self.vendor_root / part / "__init__.py").is_file():
                raise FileNotFoundError(f"{self.vendor_root / part} is not a vendor package folder")
        self.mcu = HatMcu(battery_v)
        self.imu = Sh3001Chip(world, seed=seed)
        self.bus = EmulatedBus(self.mcu, self.imu, byte_s)
        self.sleep_scale = sleep_scale
        self.users = dict(users or {})                      # user -> home, answered by the fake getent
        self.stack: VendorStack | None = None
        self._bin: Path | None = None
        self._saved: dict = {}
        self._reset_log_size = 0
        self._reset_lines = 0

    def reset(self, world: Callable[[float], Sample] = still_level, battery_v: float = 8.0) -> None:
        """Fresh chips on the same bus (the vendor packages stay loaded): no fault, nothing recorded."""
        self.mcu.__init__(battery_v)
        self.imu.__init__(world, seed=0)
        self.bus.dead = self.bus.hang = False
        self.bus.transfers = 0
        self.bus.t0 = time.perf_counter()
        if self._bin is not None:
            (self._bin / "pinctrl.log").write_text("")
        self._reset_log_size = self._reset_lines = 0

    # ------------------------------------------------------------------ what the tests look at
    @property
    def pin_log(self) -> list[str]:
        """Every `pinctrl` call the vendor code made (e.g. "set 5 op dl": the MCU's reset pin low)."""
        log = self._bin / "pinctrl.log"
        return log.read_text().splitlines() if log.exists() else []

    def limp(self) -> bool:
        """No servo channel has a pulse (the MCU was reset and nothing was written since)."""
        self._sync_resets()
        return not self.mcu.pulses

    def set_users(self, users: dict[str, str]) -> None:
        """The password database the fake `getent` answers from (user -> home); others: the real one."""
        self.users = dict(users)
        self._write_getent()

    # ------------------------------------------------------------------ loading the vendor code
    def load(self) -> VendorStack:
        """Import the vendor packages over this emulation; returns deploy.vendor.load_vendor()'s stack."""
        self._bin = Path(tempfile.mkdtemp(prefix="pidog-vendor-bin-"))
        self._write_tools()
        self._saved = {"PATH": os.environ.get("PATH", ""), "sys.path": list(sys.path),
                       "modules": {n: sys.modules.get(n) for n in FAKE_MODULES}}
        os.environ["PATH"] = f"{self._bin}{os.pathsep}{self._saved['PATH']}"
        sys.path[:0] = [str(self.vendor_root / "robot-hat"), str(self.vendor_root / "pidog")]
        for name in FAKE_MODULES:
            sys.modules[name] = self._fake_module(name)
        self.bus.on_transfer = self._sync_resets
        listdir = os.listdir

        def no_device_tree(path="."):                       # a Pi without a HAT EEPROM (robot_hat reads it at import)
            if str(path).rstrip("/") == "/proc/device-tree" and not os.path.isdir("/proc/device-tree"):
                return []
            return listdir(path)
        os.listdir = no_device_tree
        try:
            stack = load_vendor()
        except BaseException:
            os.listdir = listdir
            self.close()
            raise
        finally:
            os.listdir = listdir
        scaled = _ScaledTime(self.sleep_scale)
        for module in ("robot_hat.robot", "pidog.sh3001"):
            sys.modules[module].time = scaled
        stack.sleep = scaled.sleep
        self.stack = stack
        return stack

    def close(self) -> None:
        """Unload the vendor packages and the fakes; PATH and sys.path as they were."""
        for name in [n for n in sys.modules if n.split(".")[0] in VENDOR_MODULES]:
            del sys.modules[name]
        for name, module in self._saved.get("modules", {}).items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if "PATH" in self._saved:
            os.environ["PATH"] = self._saved["PATH"]
            sys.path[:] = self._saved["sys.path"]
        self._saved = {}
        self.bus.on_transfer = None
        if self._bin is not None:
            shutil.rmtree(self._bin, ignore_errors=True)
            self._bin = None
        self.stack = None

    def __enter__(self) -> "VendorEmulation":
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fake_module(self, name: str) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__doc__ = f"emulated {name} (deploy.vendor_bus)"
        if name in ("smbus2", "smbus"):
            module.SMBus = type("SMBus", (FakeSMBus,), {"bus": self.bus})
        if name == "pyaudio":
            module.paInt16 = 8                               # read by robot_hat.music at import
        return module

    def _write_tools(self) -> None:
        rows = ["     " + "  ".join(f"{i:x}" for i in range(16))]
        for base in range(0, 0x80, 0x10):
            cells = [f"{a:02x}" if a in self.bus.devices else "--" for a in range(base, base + 16)]
            rows.append(f"{base:02x}: " + " ".join(cells))
        _script(self._bin / "i2cdetect", "cat <<'EOF'\n" + "\n".join(rows) + "\nEOF\n")
        _script(self._bin / "pinctrl", f'echo "$*" >> "{self._bin / "pinctrl.log"}"\n')
        _script(self._bin / "sudo", "exit 0\n")         # chmod/chown of the calibration file: nothing to do here
        self._write_getent()

    def _write_getent(self) -> None:
        if self._bin is None:
            return
        cases = "".join(f'  "passwd {user}") echo "{user}:x:1000:1000::{home}:/bin/sh"; exit 0 ;;\n'
                        for user, home in self.users.items())
        real = shutil.which("getent", path=self._saved.get("PATH") or None) or "/usr/bin/getent"
        _script(self._bin / "getent", f'case "$1 $2" in\n{cases}esac\nexec {real} "$@"\n')

    def _sync_resets(self) -> None:
        """Apply the reset-pin changes `pinctrl` logged since the last transfer (pin low: the MCU resets)."""
        log = self._bin / "pinctrl.log" if self._bin is not None else None
        if log is None:
            return
        try:
            size = log.stat().st_size
        except FileNotFoundError:
            return
        if size == self._reset_log_size:
            return
        self._reset_log_size = size
        lines = log.read_text().splitlines()
        for line in lines[self._reset_lines:]:
            if line.split()[:4] == ["set", str(MCU_RESET_PIN), "op", "dl"]:
                self.mcu.reset()
        self._reset_lines = len(lines)


class MujocoWorld:
    """The emulated robot's body in MuJoCo (the PiDog env): the leg channels the vendor code writes are the
    simulated servos' targets (their pulses back to degrees, minus the calibration offsets), and the SH3001
    serves the simulated IMU. Until the runtime has commanded the stand pose the robot lies still (the
    simulated episode starts standing, as after a stand-up); from then on each IMU data read is one env
    step, taken with the targets written since the previous one."""

    def __init__(self, emulation: VendorEmulation, leg_offsets, config=None, randomize: bool = False,
                 seed: int = 0) -> None:
        import gymnasium as gym

        import pidog_env  # noqa: F401  (registers the env)
        from deploy.hardware import ENV_ID
        from pidog_env.config import EnvConfig
        self.emulation = emulation
        self.offsets = np.asarray(leg_offsets, dtype=np.float64)
        self.env = gym.make(ENV_ID, config=config or EnvConfig(), randomize=randomize)
        self.seed = seed
        self.base = self.env.unwrapped
        self.started = False
        self.steps = 0
        self.fell = False
        self.info: dict = {}
        self.targets: list[np.ndarray] = []           # the servo degrees each step was taken with
        self._lock = threading.Lock()
        emulation.imu.world = self

    def leg_targets(self) -> np.ndarray | None:
        """Servo degrees the leg channels hold now (offsets removed); None while a channel has no pulse."""
        deg = [self.emulation.mcu.servo_deg(ch) for ch in robot.LEG_PINS]
        if any(d is None for d in deg):
            return None
        return np.asarray(deg) - self.offsets

    def __call__(self, t: float) -> Sample:
        with self._lock:
            targets = self.leg_targets()
            if not self.started:
                if targets is None or np.abs(targets - robot.POSES_DEG["stand"]).max() > 1.0:
                    return still_level(t)
                self.env.reset(seed=self.seed)
                self.started = True
            elif targets is not None:
                q = robot.servo_deg_to_model_rad(targets)
                action = robot.leg_rad_to_action(q, self.base.cfg.action_scale_deg).astype(np.float32)
                _, _, terminated, _, self.info = self.env.step(action)
                self.fell = self.fell or bool(terminated)
                self.steps += 1
                self.targets.append(targets)
            imu = np.asarray(self.base.last_imu, dtype=np.float64)
            return tuple(imu[:3]), tuple(imu[3:])

    def close(self) -> None:
        self.env.close()
