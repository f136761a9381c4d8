"""Randomization curriculum: the episode randomization of `RandomizationConfig` at a *level*.

Level 1 is the configured ranges. Below 1 every range shrinks towards its midpoint and every +- amount
(pushes, calibration errors, centre-of-mass shift, sensor noise and bias, start-pose noise) scales by the
level; above 1 they widen the same way, up to the bounds each setting allows (friction and scales stay
positive). Level 0 is one nominal robot: no pushes, no noise, the middle of every range. The push
interval and `enabled` are not scaled.

Training (`rl.curriculum`) starts at `rl.curriculum_start` and raises the level by `rl.curriculum_step`
after every evaluation whose fall rate is at most `rl.curriculum_max_fall_rate`, up to
`rl.curriculum_max`; evaluations always use the configured ranges (level 1), so selection compares
models on the same episodes. `level_after` replays that rule over an evaluation history, which is how
`--resume` restores the level.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from pidog_env.config import RandomizationConfig

UNSCALED = ("enabled", "push_interval_s")


def scaled(rand: RandomizationConfig, level: float) -> RandomizationConfig:
    """`rand` with its ranges and amounts at `level` (1: unchanged)."""
    if level < 0:
        raise ValueError(f"curriculum level must be >= 0, got {level}")
    changes = {}
    for f in dataclasses.fields(rand):
        if f.name in UNSCALED:
            continue
        value = getattr(rand, f.name)
        if isinstance(value, tuple):
            lo, hi = value
            mid = (lo + hi) / 2
            new = [_clamp(mid + level * (lo - mid), f.metadata), _clamp(mid + level * (hi - mid), f.metadata)]
            if isinstance(lo, int):
                new = [math.floor(v + 0.5) for v in new]       # half up: 2.5 steps -> 3
            changes[f.name] = tuple(new)
        else:
            changes[f.name] = _clamp(value * level, f.metadata)
    return dataclasses.replace(rand, **changes)


def _clamp(value: float, rules: dict) -> float:
    if "ge" in rules:
        value = max(value, rules["ge"])
    if "gt" in rules:
        value = max(value, rules["gt"] + max(1e-3, 0.05 * abs(rules["gt"])))
    if "le" in rules:
        value = min(value, rules["le"])
    return value


def next_level(level: float, fall_rate: float, max_fall_rate: float, step: float, top: float) -> float:
    """The level after an evaluation: one step up when the evaluation's fall rate is low enough."""
    return min(top, level + step) if fall_rate <= max_fall_rate + 1e-12 else level


def level_after(fall_rates: Iterable[float], start: float, max_fall_rate: float, step: float, top: float) -> float:
    """The level after a history of evaluations (in order)."""
    level = start
    for rate in fall_rates:
        level = next_level(level, rate, max_fall_rate, step, top)
    return level
