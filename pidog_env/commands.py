"""The command task's commands: a forward speed vx (m/s) and a yaw rate wz (rad/s, positive turns left).

`Commands` holds one env's current command: drawn from `config.CommandConfig`'s ranges at reset and renewed
every `resample_s` seconds (a `zero_share` of them zero), fixed for an episode by the reset option
`{"command": (vx, wz)}`, or set from outside (teleoperation). It also sums the episode's tracking for `info`.
Draws come from the env's seeded generator; the forward task (`enabled` False) has no command (None).
"""

from __future__ import annotations

import math

import numpy as np

from pidog_env.config import CommandConfig


class Commands:
    """One env's command and the episode's tracking sums."""

    def __init__(self, cfg: CommandConfig, dt: float) -> None:
        self.cfg, self.dt = cfg, dt
        self.current: tuple[float, float] | None = None   # (vx, wz); None in the forward task
        self.next_step: int | None = None                  # the step of the next sampled command; None: held
        self._sums = [0.0, 0.0, 0.0, 0.0]                  # sums of vx, wz, |vx error|, |wz error|

    def reset(self, options: dict | None, step: int, rng: np.random.Generator) -> None:
        """The episode's first command: the reset option's, else a sampled one."""
        self._sums = [0.0, 0.0, 0.0, 0.0]
        if not self.cfg.enabled:
            self.current = None
            return
        fixed = (options or {}).get("command")
        if fixed is not None:                  # a fixed command for the whole episode (benchmarks, demos)
            self.set(*(float(v) for v in fixed))
        else:
            self.current = self._sample(step, rng)

    def set(self, vx: float, wz: float) -> None:
        """Command (vx, wz) from the next step on, held until the next reset; no new command is sampled meanwhile."""
        if not self.cfg.enabled:
            raise ValueError("set_command needs the command task (env.command.enabled)")
        if not (math.isfinite(vx) and math.isfinite(wz)):
            raise ValueError(f"command must be two finite numbers, got {(vx, wz)!r}")
        self.current, self.next_step = (float(vx), float(wz)), None

    def _sample(self, step: int, rng: np.random.Generator) -> tuple[float, float]:
        """A new command from the configured ranges (a `zero_share` of them zero); schedules the next."""
        c = self.cfg
        lo, hi = c.resample_s
        self.next_step = step + max(1, int(rng.uniform(lo, hi) / self.dt))
        if rng.uniform() < c.zero_share:
            return (0.0, 0.0)
        return (float(rng.uniform(*c.vx_range)), float(rng.uniform(*c.wz_range)))

    def track(self, vx: float, wz: float, step: int, rng: np.random.Generator) -> dict[str, float] | None:
        """`info`'s command entries after control step `step` (the command of that step, the measured `vx`
        along the body heading and yaw rate `wz`, the episode's means), then a new command when one is due.
        None in the forward task."""
        if self.current is None:
            return None
        cvx, cwz = self.current
        sums = self._sums
        sums[0] += vx
        sums[1] += wz
        sums[2] += abs(vx - cvx)
        sums[3] += abs(wz - cwz)
        n = max(step, 1)
        info = {"command_vx": cvx, "command_wz": cwz, "vx": vx, "wz": wz,
                "mean_vx": sums[0] / n, "mean_wz": sums[1] / n,
                "mean_vx_error": sums[2] / n, "mean_wz_error": sums[3] / n}
        if self.next_step is not None and step >= self.next_step:
            self.current = self._sample(step, rng)
        return info
