"""Velocity commands for command-task policies: where (vx, wz) comes from while the robot runs.

Every source is polled once per control tick (50 Hz, non-blocking), so a key press or a stick move reaches
the policy's observation in the same tick that reads it. A source whose input goes away (the terminal
reaches end of input or hangs up, the gamepad disconnects) says so in `lost`; the runtime then sends a
zero command for half a second and lies down, instead of keeping the last command.

- `KeyboardSource`: a terminal (also over SSH): up/w faster, down/s slower (or backwards where the policy
  allows), left/a turn left, right/d turn right, space stop, q lie down and quit. Each press steps the
  command by `vx_step` / `wz_step`, clipped to the policy's command ranges.
- `GamepadSource`: a gamepad through evdev (on the robot: `pip install evdev`): left stick forward/back
  for vx, right stick (or left stick sideways) for wz, A / south button stop, B / east or start quit.
- `FixedSource`: one command throughout (`--commands 0.08,0.2`).
- `ReplaySource`: the commands a `--log` recorded, tick by tick (`--commands run.npz`).

Numpy and the standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

import numpy as np

# Escape sequences of the arrow keys, and the letters that do the same.
KEYS = {
    b"\x1b[A": "faster", b"\x1bOA": "faster", b"w": "faster", b"W": "faster",
    b"\x1b[B": "slower", b"\x1bOB": "slower", b"s": "slower", b"S": "slower",
    b"\x1b[D": "left", b"\x1bOD": "left", b"a": "left", b"A": "left",
    b"\x1b[C": "right", b"\x1bOC": "right", b"d": "right", b"D": "right",
    b" ": "stop", b"q": "quit", b"Q": "quit",
}
HELP = "commands: up/w faster, down/s slower, left/a turn left, right/d turn right, space stop, q lie down and quit"


class CommandSource:
    """(vx m/s, wz rad/s) for the next tick; `quit` becomes True when the operator asks to stop, `lost` says
    why the input went away (None while it is there)."""

    quit = False
    lost: str | None = None
    vx_step, wz_step = 0.02, 0.1                  # what one key press changes (m/s, rad/s)

    def __init__(self, vx_range: tuple[float, float], wz_range: tuple[float, float]) -> None:
        self.vx_range, self.wz_range = tuple(vx_range), tuple(wz_range)
        self.command = (0.0, 0.0)

    def clip(self, vx: float, wz: float) -> tuple[float, float]:
        return (float(np.clip(vx, *self.vx_range)), float(np.clip(wz, *self.wz_range)))

    def press(self, action: str) -> None:
        """One key's effect: faster / slower / left / right step the command, stop zeroes it, quit."""
        vx, wz = self.command
        vx_step, wz_step = self.vx_step, self.wz_step
        if action == "quit":
            self.quit = True
            return
        vx, wz = {"faster": (vx + vx_step, wz), "slower": (vx - vx_step, wz), "left": (vx, wz + wz_step),
                  "right": (vx, wz - wz_step), "stop": (0.0, 0.0)}[action]
        self.command = self.clip(round(vx, 6), round(wz, 6))

    def poll(self) -> tuple[float, float]:
        return self.command

    def close(self) -> None:
        pass


class FixedSource(CommandSource):
    def __init__(self, vx: float, wz: float, vx_range=(-1.0, 1.0), wz_range=(-2.0, 2.0)) -> None:
        super().__init__(vx_range, wz_range)
        self.command = self.clip(vx, wz)


class ReplaySource(CommandSource):
    """The commands of a runtime log (`commands`, one row per tick); the last one holds after the end."""

    def __init__(self, path: str | Path, vx_range=(-1.0, 1.0), wz_range=(-2.0, 2.0)) -> None:
        from deploy.replay import read_log
        super().__init__(vx_range, wz_range)
        log = read_log(path, {}, {"commands": 2})                  # finite (ticks, 2) rows, when there
        if "commands" not in log:
            raise ValueError(f"{path} has no recorded commands (it was not logged from a command-task policy)")
        self.rows = log["commands"].astype(np.float64)
        self.i = 0

    def poll(self) -> tuple[float, float]:
        if self.i < len(self.rows):
            self.command = (float(self.rows[self.i, 0]), float(self.rows[self.i, 1]))
            self.i += 1
        return self.command


class KeyboardSource(CommandSource):
    """Keys from a terminal file descriptor (stdin by default), read without blocking; the terminal is put
    in cbreak mode (no line buffering, no echo) and restored by `close`."""

    def __init__(self, vx_range, wz_range, fd: int | None = None, vx_step: float = 0.02,
                 wz_step: float = 0.1) -> None:
        super().__init__(vx_range, wz_range)
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.vx_step, self.wz_step = vx_step, wz_step
        self.pending = b""
        self._saved = None
        if os.isatty(self.fd):
            import termios
            import tty
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def poll(self) -> tuple[float, float]:
        while not self.lost and select.select([self.fd], [], [], 0)[0]:
            try:
                chunk = os.read(self.fd, 64)
            except OSError as exc:                        # EIO once the terminal has hung up
                self.lost = f"the terminal is gone ({exc.strerror or type(exc).__name__})"
                break
            if not chunk:
                self.lost = "end of input on the terminal"
                break
            self.pending += chunk
        while self.pending:
            key = next((k for k in KEYS if self.pending.startswith(k)), None)
            if key is None:
                if self.pending.startswith(b"\x1b") and len(self.pending) < 3:
                    break                                  # the rest of an escape sequence is on its way
                self.pending = self.pending[1:]           # a key we do not use
                continue
            self.pending = self.pending[len(key):]
            self.press(KEYS[key])
        return self.command

    def close(self) -> None:
        if self._saved is not None:
            import termios
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except (termios.error, OSError):
                pass                                      # the terminal is gone
            self._saved = None


class GamepadSource(CommandSource):
    """A gamepad through evdev (Linux input events), read without blocking."""

    def __init__(self, vx_range, wz_range, device: str | None = None) -> None:
        super().__init__(vx_range, wz_range)
        try:
            import evdev
        except ImportError:
            raise ImportError("the gamepad needs the evdev package (on the robot: pip install evdev)") from None
        self.ecodes = evdev.ecodes
        paths = [device] if device else evdev.list_devices()
        pads = [evdev.InputDevice(p) for p in paths]
        pads = [d for d in pads if self.ecodes.EV_ABS in d.capabilities()]
        if not pads:
            raise ValueError("no gamepad found (no input device with analogue axes); connect one or use the keyboard")
        self.dev = pads[0]
        # capabilities() lists each analogue axis as (code, AbsInfo(value, min, max, ...))
        self.axes = dict(self.dev.capabilities()[self.ecodes.EV_ABS])
        self.sticks = {"vx": 0.0, "wz": 0.0}

    def name(self) -> str:
        return self.dev.name

    def _norm(self, code: int, value: int) -> float:
        info = self.axes.get(code)
        if info is None or info.max == info.min:
            return 0.0
        x = 2.0 * (value - info.min) / (info.max - info.min) - 1.0
        return 0.0 if abs(x) < 0.1 else x                     # a dead zone around the centre

    def poll(self) -> tuple[float, float]:
        e = self.ecodes
        while not self.lost:
            try:
                event = self.dev.read_one()
            except BlockingIOError:
                break
            except OSError as exc:                        # ENODEV: unplugged, or out of radio range
                self.lost = f"the gamepad is gone ({exc.strerror or type(exc).__name__})"
                break
            if event is None:
                break
            if event.type == e.EV_ABS:
                if event.code == e.ABS_Y:                       # stick forward is negative
                    self.sticks["vx"] = -self._norm(event.code, event.value)
                elif event.code in (e.ABS_RX, e.ABS_X):
                    self.sticks["wz"] = -self._norm(event.code, event.value)
            elif event.type == e.EV_KEY and event.value == 1:
                if event.code in (e.BTN_SOUTH,):
                    self.sticks = {"vx": 0.0, "wz": 0.0}
                elif event.code in (e.BTN_EAST, e.BTN_START):
                    self.quit = True
        vx = self.sticks["vx"] * (self.vx_range[1] if self.sticks["vx"] >= 0 else -self.vx_range[0])
        wz = self.sticks["wz"] * (self.wz_range[1] if self.sticks["wz"] >= 0 else -self.wz_range[0])
        self.command = self.clip(vx, wz)
        return self.command

    def close(self) -> None:
        try:
            self.dev.close()
        except OSError:
            pass


def parse_fixed(text: str) -> tuple[float, float] | None:
    """'VX,WZ' -> (vx, wz), else None."""
    parts = text.split(",")
    if len(parts) != 2:
        return None
    try:
        vx, wz = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return (vx, wz) if np.isfinite([vx, wz]).all() else None


def make_source(text: str, vx_range, wz_range) -> CommandSource:
    """`--commands`: keyboard, gamepad[:/dev/input/eventN], VX,WZ, or a runtime log (.npz)."""
    if text == "keyboard":
        return KeyboardSource(vx_range, wz_range)
    if text == "gamepad" or text.startswith("gamepad:"):
        return GamepadSource(vx_range, wz_range, text.partition(":")[2] or None)
    fixed = parse_fixed(text)
    if fixed is not None:
        return FixedSource(*fixed, vx_range=vx_range, wz_range=wz_range)
    if text.endswith(".npz"):
        if not Path(text).is_file():
            raise ValueError(f"--commands {text}: no such file")
        return ReplaySource(text, vx_range, wz_range)
    raise ValueError(f"--commands must be keyboard, gamepad[:DEVICE], VX,WZ or a runtime log .npz, got {text!r}")
