"""Leg inverse and forward kinematics in the vendor's (y, z) convention.

A foot target is (y, z) in metres relative to the hip: y positive rearward, z = hip height above the
foot. Angles are vendor *left-leg* servo angles in radians (hip, knee); apply `robot.LEG_SIGNS` (via
`robot.servo_deg_to_model_rad`) for the right legs. Pure numpy, vectorized over leading dimensions.
"""

from __future__ import annotations

import numpy as np

from pidog_env.robot import SHIN_LENGTH, THIGH_LENGTH


def leg_ik(y: np.ndarray, z: np.ndarray, thigh: float = THIGH_LENGTH,
           shin: float = SHIN_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Vendor IK: foot (y rearward, z down) -> (hip, knee) servo angles in radians (left-leg sign).

    u = |(y, z)|; knee_inner = acos((L^2 + F^2 - u^2) / 2LF);
    hip = atan2(y, z) + acos((L^2 + u^2 - F^2) / 2Lu); knee = knee_inner - 90 deg.
    Targets out of reach are clipped to the workspace (cosines clipped to [-1, 1]).
    """
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    u = np.maximum(np.hypot(y, z), 1e-9)
    cos_knee = np.clip((thigh**2 + shin**2 - u**2) / (2 * thigh * shin), -1.0, 1.0)
    cos_hip = np.clip((thigh**2 + u**2 - shin**2) / (2 * thigh * u), -1.0, 1.0)
    hip = np.arctan2(y, z) + np.arccos(cos_hip)
    knee = np.arccos(cos_knee) - np.pi / 2
    return hip, knee


def leg_fk(hip: np.ndarray, knee: np.ndarray, thigh: float = THIGH_LENGTH,
           shin: float = SHIN_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics: (hip, knee) left-leg servo radians -> foot (y rearward, z down)."""
    hip = np.asarray(hip, dtype=np.float64)
    knee = np.asarray(knee, dtype=np.float64)
    # Knee position: thigh rotated `hip` rearward from straight down.
    y_knee = thigh * np.sin(hip)
    z_knee = thigh * np.cos(hip)
    # Shin: forward-pointing at knee=0, rotated by hip+knee towards straight down.
    y = y_knee - shin * np.cos(hip + knee)
    z = z_knee + shin * np.sin(hip + knee)
    return y, z
