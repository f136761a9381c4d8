"""The safety layer between the policy and the servos (numpy only).

Every command passes through `SafetyLayer.filter`: non-finite actions are rejected (the last safe
command is held), targets are clamped to the per-joint safe envelope (`robot.LEG_SERVO_LIMITS_DEG`, in
policy.json) and rate-limited to the vendor's 428 deg/s.
`tilted` says when the body leans past the fall limit, so the loop can stop and lie down.
"""

from __future__ import annotations

import math

import numpy as np


class SafetyLayer:
    def __init__(self, limits_deg, speed_deg_s: float, dt: float, start_deg: np.ndarray,
                 fall_tilt_deg: float) -> None:
        limits = np.asarray(limits_deg, dtype=np.float64)         # (joints, 2): lower, upper servo degrees
        self.lower, self.upper = limits[:, 0].copy(), limits[:, 1].copy()
        self.max_step = float(speed_deg_s) * dt
        self.last = np.asarray(start_deg, dtype=np.float64).copy()
        self.cos_fall = math.cos(math.radians(fall_tilt_deg))
        self.rejected = 0

    def filter(self, target_deg: np.ndarray) -> np.ndarray:
        """Safe servo command (degrees) for a requested target: finite, inside the envelope, rate-limited."""
        target = np.asarray(target_deg, dtype=np.float64)
        if target.shape != self.last.shape or not np.isfinite(target).all():
            self.rejected += 1
            return self.last.copy()
        target = np.clip(target, self.lower, self.upper)
        step = np.clip(target - self.last, -self.max_step, self.max_step)
        self.last = self.last + step
        return self.last.copy()

    def tilted(self, gravity_body: np.ndarray) -> bool:
        """True when the body z axis is further than the fall tilt from vertical (gravity is unit, down)."""
        return -float(gravity_body[2]) < self.cos_fall

    def reset(self, current_deg: np.ndarray) -> None:
        self.last = np.asarray(current_deg, dtype=np.float64).copy()
