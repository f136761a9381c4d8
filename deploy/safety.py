"""The safety layer between the policy and the servos (numpy and the standard library only).

Every command passes through `SafetyLayer.filter`, in the env's order: non-finite targets are rejected
(the last command is held); the commanded target moves towards the requested one by at most the
vendor's 428 deg/s (the rate limit acts on the command, as the env's does, not on the clipped target);
that command is clipped to the per-joint safe envelope (`robot.LEG_SERVO_LIMITS_DEG`, in policy.json);
then the leg-clearance guard (`LegClearance`) moves a pose in which a front and a hind leg would come
closer than `CLEARANCE_MARGIN` to the nearest pose that keeps it, and counts each such intervention.
`tilted` says when the body leans past the fall limit, so the loop can stop and lie down.
"""

from __future__ import annotations

import math

import numpy as np

from pidog_env import robot

# The leg geoms of the MuJoCo model (pidog_env/assets/pidog.xml; tests/test_deploy.py checks them against
# the loaded model): thigh and shin capsule radii and the foot sphere's, metres.
THIGH_RADIUS, SHIN_RADIUS, FOOT_RADIUS = 0.0065, 0.005, 0.006
CLEARANCE_MARGIN = 0.004     # metres kept between a front and a hind leg (servo tracking and calibration errors)
_PROJECTION_STEPS = 20       # Newton steps onto the margin's boundary before falling back to a bisection
_BACKTRACKS = 8              # halvings of a Newton step that does not widen the gap
_GRAD_H = 1e-5               # radians, for the clearance's numerical gradient (central differences)
_GRAD_STEPS = np.eye(4) * _GRAD_H


def _point_segment(px, pz, ax, az, bx, bz) -> float:
    dx, dz = bx - ax, bz - az
    n = dx * dx + dz * dz
    t = 0.0 if n == 0.0 else min(1.0, max(0.0, ((px - ax) * dx + (pz - az) * dz) / n))
    ex, ez = px - ax - t * dx, pz - az - t * dz
    return math.sqrt(ex * ex + ez * ez)


def _segments(a, b, c, d) -> float:
    """Distance between segments ab and cd in the plane; when they cross, minus the shortest way out
    (the smallest endpoint-to-other-segment distance), so that the value keeps a slope inside."""
    ends = min(_point_segment(*a, *c, *d), _point_segment(*b, *c, *d), _point_segment(*c, *a, *b),
               _point_segment(*d, *a, *b))
    def side(p, q, r):                                   # sign of the turn p -> q -> r
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    if side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0:
        return -ends
    return ends


def _leg(hip_x: float, hip: float, knee: float):
    """Hip, knee and foot of a leg in its side's plane (x forward, z up; metres) at model joint angles:
    the thigh hangs down and swings rearward with the hip angle, the shin points forward at knee 0."""
    kx, kz = hip_x - robot.THIGH_LENGTH * math.sin(hip), -robot.THIGH_LENGTH * math.cos(hip)
    fx, fz = kx + robot.SHIN_LENGTH * math.cos(hip + knee), kz - robot.SHIN_LENGTH * math.sin(hip + knee)
    return (hip_x, 0.0), (kx, kz), (fx, fz)


def side_clearance(front_hip: float, front_knee: float, hind_hip: float, hind_knee: float) -> float:
    """Smallest gap (metres; negative: overlap) between the front and the hind leg of one side, at model
    joint angles (radians): thigh and shin capsules and the foot spheres, as the model's contact pairs
    (`pidog_env.model.leg_pairs`) collide them."""
    x = robot.HIP_SPACING_X / 2
    fh, fk, ff = _leg(x, front_hip, front_knee)
    hh, hk, hf = _leg(-x, hind_hip, hind_knee)
    apart = min(fh[0], fk[0], ff[0]) - max(hh[0], hk[0], hf[0]) - 2 * THIGH_RADIUS
    if apart > 0.03:
        return apart                 # far apart along x (stand, the trot): this lower bound is enough, and cheap
    front = ((fh, fk, THIGH_RADIUS), (fk, ff, SHIN_RADIUS))
    hind = ((hh, hk, THIGH_RADIUS), (hk, hf, SHIN_RADIUS))
    gaps = [math.dist(ff, hf) - 2 * FOOT_RADIUS]
    for a, b, ra in front:
        gaps.append(_point_segment(*hf, *a, *b) - ra - FOOT_RADIUS)
        for c, d, rb in hind:
            gaps.append(_segments(a, b, c, d) - ra - rb)
    for c, d, rb in hind:
        gaps.append(_point_segment(*ff, *c, *d) - rb - FOOT_RADIUS)
    return min(gaps)


class LegClearance:
    """Keeps a front and a hind leg of each side apart: about 10 % of the joint envelope has them touching
    (reach 118 mm > 117 mm hip spacing), which jams the real servos. Works in vendor servo degrees."""

    SIDES = ((0, 1, 4, 5), (2, 3, 6, 7))       # leg array indices: front hip, front knee, hind hip, hind knee

    def __init__(self, leg_signs, limits_deg, margin: float = CLEARANCE_MARGIN) -> None:
        self.signs = np.asarray(leg_signs, dtype=np.float64)
        limits = np.asarray(limits_deg, dtype=np.float64)
        self.lower, self.upper = limits[:, 0], limits[:, 1]
        self.margin = margin

    def _q(self, servo_deg: np.ndarray, side: tuple[int, ...]) -> list[float]:
        return [math.radians(float(servo_deg[i]) * self.signs[i]) for i in side]

    def clearances(self, servo_deg: np.ndarray) -> tuple[float, float]:
        """Gap of the left and of the right side (metres)."""
        return tuple(side_clearance(*self._q(servo_deg, side)) for side in self.SIDES)

    def clear(self, servo_deg: np.ndarray) -> bool:
        return min(self.clearances(servo_deg)) >= self.margin

    def nearest_safe(self, servo_deg: np.ndarray) -> np.ndarray | None:
        """The pose nearest to `servo_deg` (inside the envelope) whose legs keep the margin, side by side:
        projected Newton steps along the clearance's gradient onto the margin (each step must widen the gap;
        joints at an envelope limit stay there). None where that does not get there, e.g. legs deep in each
        other, where the nearest pair of surfaces changes along the way (the caller then moves towards
        the target from the last safe pose only as far as it stays safe)."""
        out = np.asarray(servo_deg, dtype=np.float64).copy()
        for side in self.SIDES:
            idx = list(side)
            q = np.array(self._q(out, side))
            lo, hi = np.sort(np.radians(np.stack([self.lower[idx], self.upper[idx]]) * self.signs[idx]), axis=0)
            gap = side_clearance(*q)
            steps = 0
            while gap < self.margin:
                if steps == _PROJECTION_STEPS:
                    return None
                grad = np.array([side_clearance(*(q + h)) - side_clearance(*(q - h)) for h in _GRAD_STEPS]) / (2 * _GRAD_H)
                grad[((q <= lo + 1e-12) & (grad < 0)) | ((q >= hi - 1e-12) & (grad > 0))] = 0.0
                norm2 = float(grad @ grad)
                if norm2 == 0.0:
                    return None
                k = (self.margin + 1e-4 - gap) / norm2
                for _ in range(_BACKTRACKS):
                    trial = np.clip(q + k * grad, lo, hi)
                    trial_gap = side_clearance(*trial)
                    if trial_gap > gap:
                        break
                    k /= 2
                else:
                    return None
                if trial_gap >= self.margin:              # past the margin: back onto it, towards the target
                    a, b = 0.0, 1.0
                    for _ in range(12):
                        mid = (a + b) / 2
                        if side_clearance(*(q + mid * (trial - q))) >= self.margin:
                            b = mid
                        else:
                            a = mid
                    trial = q + b * (trial - q)
                    trial_gap = side_clearance(*trial)
                q, gap = trial, trial_gap
                steps += 1
            if steps:
                out[idx] = np.degrees(q) * self.signs[idx]
        return out


class SafetyLayer:
    def __init__(self, limits_deg, speed_deg_s: float, dt: float, start_deg: np.ndarray,
                 fall_tilt_deg: float, clearance: LegClearance | None = None) -> None:
        limits = np.asarray(limits_deg, dtype=np.float64)         # (joints, 2): lower, upper servo degrees
        self.lower, self.upper = limits[:, 0].copy(), limits[:, 1].copy()
        self.max_step = float(speed_deg_s) * dt
        self.command = np.asarray(start_deg, dtype=np.float64).copy()   # rate-limited, not yet clipped (the env's)
        self.last = self.command.copy()                                 # what was last sent to the servos
        self.cos_fall = math.cos(math.radians(fall_tilt_deg))
        self.clearance = clearance
        self.rejected = 0
        self.interventions = 0            # commands the leg-clearance guard moved
        self.intervened = False           # whether it moved the last one

    def filter(self, target_deg: np.ndarray) -> np.ndarray:
        """Safe servo command (degrees) for a requested target: finite, rate-limited, inside the envelope,
        legs apart."""
        target = np.asarray(target_deg, dtype=np.float64)
        self.intervened = False
        if target.shape != self.last.shape or not np.isfinite(target).all():
            self.rejected += 1
            return self.last.copy()
        step = target - self.command
        self.command = np.where(np.abs(step) <= self.max_step, target,
                                self.command + np.clip(step, -self.max_step, self.max_step))
        out = np.clip(self.command, self.lower, self.upper)
        if self.clearance is not None and not self.clearance.clear(out):
            out = self._guard(out)
        self.last = out
        return out.copy()

    def _guard(self, pose: np.ndarray) -> np.ndarray:
        """The nearest pose that keeps the legs apart, reached at no more than the speed limit from the last
        (safe) command; where that is not safe, the furthest safe point on the way from the last command."""
        self.interventions += 1
        self.intervened = True
        nearest = self.clearance.nearest_safe(pose)
        if nearest is not None:
            step = nearest - self.last
            if np.abs(step).max() <= self.max_step:
                return nearest
            pose = self.last + np.clip(step, -self.max_step, self.max_step)
            if self.clearance.clear(pose):
                return pose
        lo, hi = 0.0, 1.0                                 # self.last is safe: bisect towards `pose`
        for _ in range(20):
            mid = (lo + hi) / 2
            if self.clearance.clear(self.last + mid * (pose - self.last)):
                lo = mid
            else:
                hi = mid
        return self.last + lo * (pose - self.last)

    def tilted(self, gravity_body: np.ndarray) -> bool:
        """True when the body z axis is further than the fall tilt from vertical (gravity is unit, down)."""
        return -float(gravity_body[2]) < self.cos_fall

    def reset(self, current_deg: np.ndarray) -> None:
        self.command = np.asarray(current_deg, dtype=np.float64).copy()
        self.last = self.command.copy()
