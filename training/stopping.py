"""How a run stops on SIGINT (Ctrl-C) or SIGTERM, whether it reaches the main process or the whole
process group (`kill -- -PGID`, `timeout`, a terminal's Ctrl-C, service managers).

* The first signal ends the current stage cleanly. A stage that can checkpoint (PPO) polls `received`
  and saves; any other stage is interrupted at once (`Interrupted`), since it has nothing to save.
  Either way the command prints one line saying what is saved and how to continue, and exits with
  128 + the signal number (130 for SIGINT, 143 for SIGTERM), without a traceback.
* A second signal exits at once (same exit code), also without a traceback.
* Env worker processes ignore both signals (`ignore_stop_signals`, run in each worker), so they never
  die while the main process still needs them; they exit when the main process closes them or dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A stop signal arrived; `saved` says what the interrupted stage left behind."""

    def __init__(self, signum: int, stage: str, saved: str = "", continue_with: str = "") -> None:
        self.signum, self.stage, self.saved, self.continue_with = signum, stage, saved, continue_with
        super().__init__(f"{signal.Signals(signum).name} during {stage}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self) -> str:
        """The one line a stopped command prints."""
        text = f"stopped by {signal.Signals(self.signum).name} during {self.stage}: {self.saved}"
        return text + (f"; continue with {self.continue_with}" if self.continue_with else "")


class StopSignals:
    """The process-wide handler (one per run), with the current stage's name and whether it polls."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.current = "start-up"
        self._polled = False
        self._previous: dict[int, Any] = {}

    def install(self) -> "StopSignals":
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @contextlib.contextmanager
    def stage(self, name: str, polled: bool = False, saved: str = "nothing is saved by this stage",
              continue_with: str = "") -> Iterator[None]:
        """Run a stage. `polled`: it checks `received` itself and saves before stopping."""
        outer = self.current, self._polled
        self.current, self._polled = name, polled
        try:
            if self.received is not None and not polled:
                raise Interrupted(self.received, name, saved, continue_with)
            yield
        except Interrupted as exc:
            exc.saved = exc.saved or saved
            exc.continue_with = exc.continue_with or continue_with
            raise
        finally:
            self.current, self._polled = outer

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            print(f"\n{name} again: stopping now without saving", file=sys.stderr, flush=True)
            os._exit(128 + self.received)
            return                                  # (only reached where os._exit is replaced, in tests)
        self.received = signum
        if self._polled:
            print(f"\n{name} received: finishing the current update, then stopping cleanly "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)
            return
        raise Interrupted(signum, self.current)


def ignore_stop_signals() -> None:
    """For env worker processes: the main process decides when they stop."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


CURRENT = StopSignals()
