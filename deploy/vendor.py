"""SunFounder's vendor stack reduced to what the runtime needs, with no vendor thread in the process.

`pidog.Pidog()` starts threads in the caller's process: legs/head/tail action threads, an IMU thread that
samples at ~19 Hz, an LED thread and (pidog 1.3.13) an ultrasonic thread that busy-waits on a GPIO
holding the GIL. Each of the runtime's 8 servo writes per tick releases the GIL and may then wait up
to the 5 ms switch interval to get it back, so those threads turn a ~4 ms tick into ~40 ms. The
runtime therefore never constructs `Pidog`; it builds the parts itself, as `Pidog.__init__` does:

* `robot_hat.utils.reset_mcu()`, then `robot_hat.Robot` for legs, head and tail (same pins, start-up
  order and `pidog.conf` offsets; constructing them moves the servos to the lie pose one by one);
* `pidog.sh3001.Sh3001` (no thread), switched to +-8 g and read with one 12-byte block read at the
  start of each tick, decoded here (`decode_imu_block`: the vendor's `bytes_toint` gets 64 of the
  65,536 raw values wrong by 256);
* `robot_hat.utils.get_battery_voltage()` (one ADC read);
* `robot_hat.utils.reset_mcu()` again to release the servos (`RobotHardware.release`) when the bus is dead.

Servo writes go through each servo's own I2C word write (the register value `Servo.angle` computes),
so a write that failed after the vendor's 5 retries (it returns False) is counted, not lost.

The calibration file is found as the vendor finds it (`vendor_conf_path`): in the home directory of
$SUDO_USER (the user who ran sudo), else of $LOGNAME, from the password database. Nothing here looks
up a home directory at import time.
"""

from __future__ import annotations

import os
import pwd
import re
import struct
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from pidog_env import robot

CONF_RELATIVE = Path(".config") / "pidog" / "pidog.conf"      # under the user's home, as pidog.pidog.config_file
HAT_I2C_DEVICE = "/dev/i2c-1"      # the bus robot_hat opens (smbus2.SMBus(1)) and keeps open in every I2C object
PROC = Path("/proc")
# Command lines of programs that drive the HAT through the vendor's libraries (SunFounder's apps and examples).
VENDOR_PROGRAM = re.compile(r"pidog|robot[_-]hat|sunfounder|ezblock", re.IGNORECASE)
# robot_hat.Servo: -90..90 deg -> 500..2500 us pulses in a 20 ms (50 Hz) frame of 4095 timer counts.
SERVO_MIN_US, SERVO_MAX_US, SERVO_FRAME_US, SERVO_PERIOD = 500.0, 2500.0, 20000.0, 4095


@dataclass
class VendorStack:
    """The vendor classes and functions the runtime uses (the real ones, or `deploy.fake_vendor`'s)."""

    Robot: Any                                  # robot_hat.Robot
    Sh3001: Any                                 # pidog.sh3001.Sh3001
    reset_mcu: Callable[[], None]
    battery_voltage: Callable[[], float]
    versions: dict[str, str] = field(default_factory=dict)
    sleep: Callable[[float], None] | None = None     # None: time.sleep (the fake may shorten start-up waits)


def _version(dist: str, module: Any) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def load_vendor() -> VendorStack:
    """Import the installed vendor libraries; ImportError with the fix when they are missing or too new."""
    try:
        import robot_hat
        from robot_hat import utils
    except ImportError as exc:
        raise ImportError(f"robot_hat is not installed ({exc})") from exc
    if not hasattr(robot_hat, "Robot"):
        raise ImportError(f"robot_hat {_version('robot-hat', robot_hat)} has no Robot class (robot-hat 2.6.x removed "
                          "it); install the 2.5.x branch, which pidog needs too")
    try:
        import pidog
        from pidog.sh3001 import Sh3001
    except ImportError as exc:
        raise ImportError(f"the SunFounder pidog library is not importable ({exc})") from exc

    def battery() -> float:
        with warnings.catch_warnings():                # deprecated in robot-hat 2.5.5, still the documented call
            warnings.simplefilter("ignore", DeprecationWarning)
            return float(utils.get_battery_voltage())

    def reset() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            utils.reset_mcu()

    versions = {"pidog": _version("pidog", pidog), "robot_hat": _version("robot-hat", robot_hat)}
    return VendorStack(Robot=robot_hat.Robot, Sh3001=Sh3001, reset_mcu=reset, battery_voltage=battery,
                       versions=versions)


def version_warnings(versions: dict[str, str]) -> list[str]:
    """Lines to print when the installed vendor versions differ from the tested pair."""
    out = []
    for name, tested in robot.TESTED_VENDOR_VERSIONS.items():
        have = versions.get(name, "unknown")
        if have.split(".")[:2] != tested.split(".")[:2]:
            out.append(f"warning: {name} {have} is installed; this runtime was tested with {name} {tested}")
    return out


def servo_register_value(angle_deg: float) -> int:
    """The PWM register value robot_hat's `Servo.angle(angle_deg)` writes (clamped to +-90 deg)."""
    angle = min(max(float(angle_deg), -90.0), 90.0)
    pulse_us = SERVO_MIN_US + (angle + 90.0) * (SERVO_MAX_US - SERVO_MIN_US) / 180.0
    return int(pulse_us / SERVO_FRAME_US * SERVO_PERIOD)


def write_servo(servo: Any, angle_deg: float) -> bool:
    """One servo write as `Servo.angle` does it (PWM channel register, high byte first); False when the
    I2C write failed after the vendor's retries."""
    value = servo_register_value(angle_deg)
    word = ((value & 0xFF) << 8) | (value >> 8)         # robot_hat's I2C.write([reg, high, low]) byte order
    return servo._write_word_data(servo.REG_CHN + servo.channel, word) is not False


def chip_to_body(v) -> "np.ndarray":
    """SH3001 chip axes (+x down, +y rearward, +z left) -> body axes (x forward, y left, z up)."""
    import numpy as np
    x, y, z = v
    return np.array([-y, z, -x], dtype=np.float64)


def body_to_chip(v) -> tuple[float, float, float]:
    """Inverse of `chip_to_body`."""
    bx, by, bz = v
    return -bz, -bx, by


OFFSET_COUNTS = {"legs_servo_offset_list": len(robot.LEG_PINS), "head_servo_offset_list": len(robot.HEAD_PINS),
                 "tail_servo_offset_list": len(robot.TAIL_PINS)}


class CalibrationError(ValueError):
    """pidog.conf holds offsets the runtime must not drive the servos with (one line: file, line, problem)."""


def vendor_home(environ: dict[str, str] | None = None) -> Path | None:
    """The home directory the vendor's libraries use: that of $SUDO_USER, else of $LOGNAME, from the
    password database (pidog and robot_hat run `echo ${SUDO_USER:-$LOGNAME}` and `getent passwd`), so
    that `sudo` finds the invoking user's calibration, not root's. Where that user has no entry, $HOME,
    then the entry of this process's uid; None when there is none of these."""
    env = os.environ if environ is None else environ
    user = env.get("SUDO_USER") or env.get("LOGNAME")
    if user:
        try:
            return Path(pwd.getpwnam(user).pw_dir)
        except KeyError:
            pass
    if env.get("HOME"):
        return Path(env["HOME"])
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None


def vendor_conf_path(environ: dict[str, str] | None = None) -> Path | None:
    """~/.config/pidog/pidog.conf of the user the vendor's libraries run for (`vendor_home`)."""
    home = vendor_home(environ)
    return None if home is None else home / CONF_RELATIVE


def calibration_problem(offsets: dict[str, list[float]], conf: Path) -> str | None:
    """Why these leg offsets must not drive the robot without the operator saying so (no file, no leg
    list, every leg offset zero), or None."""
    legs = offsets.get("legs_servo_offset_list")
    if not conf.exists():
        return f"there is no calibration file {conf}"
    if legs is None:
        return f"{conf} has no legs_servo_offset_list"
    if not any(legs):
        return f"every leg servo offset in {conf} is zero"
    return None


def decode_imu_block(data) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """The SH3001's 12 data bytes (accelerometer x, y, z then gyro x, y, z; each low byte first) -> two
    raw signed triples; None unless exactly 12 bytes came back (robot_hat returns False on a failed read)."""
    if not data or len(data) != 12:
        return None
    values = struct.unpack("<6h", bytes(data))
    return values[:3], values[3:]


def hat_users(proc: Path | None = None, device: str = HAT_I2C_DEVICE) -> list[str]:
    """Other processes that drive the Robot HAT: those holding its I2C bus open, and, where a process's
    open files cannot be read (another user's, without sudo), Python programs whose command line names
    the vendor's libraries or apps. One line each; this process and its parents are left out."""
    proc = PROC if proc is None else proc
    ours = _ancestors(proc)
    found = []
    try:
        entries = sorted((e for e in proc.iterdir() if e.name.isdigit()), key=lambda e: int(e.name))
    except OSError:
        return []
    for entry in entries:
        if int(entry.name) in ours:
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue                                   # gone meanwhile
        if not argv:
            continue                                   # a kernel thread
        command = " ".join(argv)
        links = _open_files(entry / "fd")
        if links is None:
            if "python" in Path(argv[0]).name and VENDOR_PROGRAM.search(command):
                found.append(f"pid {entry.name} ({command}) looks like a vendor program (its open files are "
                             "readable only with sudo)")
        elif device in links:
            found.append(f"pid {entry.name} ({command}) has {device} open")
    return found


def _open_files(fd_dir: Path) -> list[str] | None:
    """Where a process's file descriptors point, or None when they cannot be read."""
    try:
        fds = list(fd_dir.iterdir())
    except PermissionError:
        return None
    except OSError:
        return []
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    return links


def _ancestors(proc: Path) -> set[int]:
    """This process and its parents (sudo, a shell): they are us, not another driver of the HAT. This
    process counts even as PID 1 (a container's command), where the walk up the parents stops at once."""
    def parent(pid: int) -> int:
        try:
            return int((proc / str(pid) / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return 0

    pids = {os.getpid()}
    pid = parent(os.getpid())
    while pid > 1 and pid not in pids:
        pids.add(pid)
        pid = parent(pid)
    return pids


def read_pidog_conf(path: Path) -> dict[str, list[float]]:
    """Calibration offsets from the robot's pidog.conf (`legs_servo_offset_list = [...]` lines), checked:
    each offset line must be a [..] list of numbers (parsed as the vendor parses it), finite, within the
    +-20 deg SunFounder's calibration allows, one per servo of legs, head and tail. A missing file is no
    calibration ({}); anything wrong is a CalibrationError naming the file, the line and the problem."""
    out: dict[str, list[float]] = {}
    if not path.exists():
        return out
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} is not a file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise CalibrationError(f"calibration file {path} is not a text file") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise CalibrationError(f"calibration file {path} cannot be read ({why})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if not key.endswith("servo_offset_list"):
            continue
        where = f"{path}:{number}: {key}"
        if key in out:
            raise CalibrationError(f"{where} appears twice")
        out[key] = _offsets(where, value, OFFSET_COUNTS.get(key))
    return out


def _offsets(where: str, value: str, count: int | None) -> list[float]:
    """`[a, b, ...]` -> floats, parsed as robot_hat's Robot does (strip the brackets, split on commas)."""
    import math
    if not (value.startswith("[") and value.endswith("]")):
        raise CalibrationError(f"{where} must be a list of numbers like [0, 1.5, -2], got {value!r}")
    try:
        offsets = [float(v) for v in value[1:-1].split(",")] if value[1:-1].strip() else []
    except ValueError:
        raise CalibrationError(f"{where} must be a list of numbers like [0, 1.5, -2], got {value!r}") from None
    bad = next((v for v in offsets if not math.isfinite(v)), None)
    if bad is not None:
        raise CalibrationError(f"{where} holds a non-finite offset ({bad})")
    limit = robot.CALIBRATION_OFFSET_MAX_DEG
    bad = next((v for v in offsets if abs(v) > limit), None)
    if bad is not None:
        raise CalibrationError(f"{where} offset {bad:g} deg is outside +-{limit:g} deg (SunFounder's calibration "
                               "clamps offsets to that): recalibrate the robot")
    if count is not None and len(offsets) != count:
        raise CalibrationError(f"{where} has {len(offsets)} offsets; {count} expected (one per servo)")
    return offsets
