"""Randomization at a *level*: the ranges of `RandomizationConfig` scaled about their midpoints.

Level 1 is the configured ranges. Below 1 every range shrinks towards its midpoint and every +- amount
(pushes, calibration errors, centre-of-mass shift, servo spread, sensor noise and bias, start-pose noise) scales by the
level; above 1 they widen the same way, up to the bounds each setting allows (friction and scales stay
positive). Level 0 is the middle of every range with no pushes and no noise; the start heading (+-0.3 rad)
and the servo dead time's +-1 physics step are not ranges and stay. The push
interval and `enabled` are not scaled. `pidog evaluate --randomization-level L` uses it to see how far
outside its training ranges a policy holds. (A training curriculum over these levels was measured and
not adopted; CHANGELOG.md.)
"""

from __future__ import annotations

import dataclasses
import math

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
