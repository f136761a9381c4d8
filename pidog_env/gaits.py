"""Hard-coded gaits as functions of the gait phase, usable as experts for demonstrations.

`TrotGait` is the vendor's diagonal trot (LF+RH, then RF+LH) with smooth foot paths, solved with the
vendor IK (`kinematics.leg_ik`) and emitted as PiDog-v2 actions. It reads the phase from the env's gait
clock in the observation, so the same object drives a single env, a vector env or a recorded dataset.

Commands (forward speed vx, yaw rate wz): with `env.command` on, the gait also reads the command from
the observation and sets each side's stride from it (`command_strides`): the stride for vx (zero trots
in place, negative walks back), and a left/right difference for wz, since PiDog has no abduction joints
and turns by skid-steering like the vendor's turn gaits. Without a command in the observation it walks
the fixed `TrotParams.stride` straight ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pidog_env import robot
from pidog_env.config import EnvConfig
from pidog_env.kinematics import leg_ik
from pidog_env.observation import CMD_VX_SCALE, CMD_WZ_SCALE, GYRO_SCALE, frame_layout

# Phase offset of each leg (vendor leg order LF, RF, LH, RH): diagonal pairs half a cycle apart.
TROT_OFFSETS = np.array([0.0, 0.5, 0.5, 0.0])
FRONT = np.array([True, True, False, False])
SIDE = np.array([1.0, -1.0, 1.0, -1.0])          # +1 left, -1 right
FORE = np.array([1.0, 1.0, -1.0, -1.0])          # +1 front, -1 hind


@dataclass(frozen=True)
class TrotParams:
    """Foot-path parameters in metres (vendor convention: y rearward, z hip height above the foot).

    Defaults come from a random search over stride, height, stride centres, lift, duty and lead, scored
    on randomized episodes (seeds 100-121, disjoint from the acceptance seeds 0-19) by speed, falls and
    the torque_limit reward, on the power-limited servo model of PiDog-v2 (re-tuned from PiDog-v1's
    trot, which walked 0.117 m/s on it instead of 0.138 on v1's servos). They differ from the vendor trot
    (stride 100, lift 20, height 80 mm, which rolls over in this model): with 0.19 N m servos whose torque
    falls with speed and this backward-knee leg, a shorter, rearward-centred stance keeps the stance
    knee and hip torques under the limit, and a duty factor of 0.62 gives a four-foot support at each
    switch. See README "The trot".
    """

    stride: float = 0.0518         # fore-aft foot travel per step
    lift: float = 0.012            # swing height
    body_height: float = 0.0917    # hip height above the foot in stance
    duty: float = 0.6237           # fraction of the cycle a foot is on the ground
    front_y: float = -0.0067       # stride centre, front feet (negative = forward of the hip)
    hind_y: float = 0.0343         # stride centre, hind feet
    lead: float = 0.5035           # phase lead in control steps (targets are rate-limited and lag)
    # Posture feedback from the IMU part of the observation: lengthen the stance legs on the low side.
    roll_gain: float = 0.0         # metres of leg length per unit sin(roll)
    pitch_gain: float = 0.0        # metres of leg length per unit sin(pitch)
    rate_gain: float = 0.0         # metres per rad/s of roll/pitch rate (damping term)
    # Commands: body speed per metre of stride is duty x period; these gains absorb the measured slip
    # (bench/command_tracking.py fits them: the trot's speed and yaw rate over a grid of commands).
    vx_gain: float = 1.1           # stride = vx x duty x period x vx_gain (feet slip ~10 % under randomization)
    # Skid-steering slips far more: turning needs ~4x the no-slip stride difference (README "Commands").
    wz_gain: float = 4.0           # side stride difference = wz x track x duty x period x wz_gain
    max_stride: float = 0.07       # |stride| limit per side (longer strides topple the 0.19 N m servos)


# The default env's observation frame (no options), whose entries `TrotGait` reads by default.
_DEFAULT_LAYOUT = frame_layout(ultrasonic=False)

# Lateral distance between the left and right feet (the hips' spacing): the skid-steer lever arm.
TRACK_WIDTH = robot.HIP_SPACING_Y


def command_strides(vx, wz, p: TrotParams, duty_period: float) -> np.ndarray:
    """Per-leg stride (..., 4) for commanded forward speed `vx` (m/s) and yaw rate `wz` (rad/s).

    A foot in stance moves its stride in duty x period seconds, so side speed v needs a stride of
    v x duty x period; turning at wz moves the left feet at vx - wz x track / 2 and the right at
    vx + wz x track / 2 (counter-clockwise, positive wz, needs the right side faster)."""
    vx = np.asarray(vx, dtype=np.float64)[..., None]
    wz = np.asarray(wz, dtype=np.float64)[..., None]
    side_speed = vx * p.vx_gain - SIDE * wz * (TRACK_WIDTH / 2) * p.wz_gain
    return np.clip(side_speed * duty_period, -p.max_stride, p.max_stride)


def foot_targets(phase: np.ndarray, p: TrotParams, stride: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, z, in_stance) of the four feet at gait phase(s) `phase` (cycles), each of shape (..., 4).

    `stride` (..., 4) replaces `p.stride` per leg (commands); negative strides walk backwards."""
    s = (np.asarray(phase, dtype=np.float64)[..., None] + TROT_OFFSETS) % 1.0
    stride = p.stride if stride is None else stride
    centre = np.where(FRONT, p.front_y, p.hind_y)
    stance = s < p.duty
    # Stance: foot slides from front (-stride/2) to back (+stride/2) at constant speed.
    u_st = np.where(stance, s / p.duty, 0.0)
    # Swing: smooth (cosine) return from back to front, lifted on a half-sine.
    u_sw = np.where(stance, 0.0, (s - p.duty) / (1.0 - p.duty))
    y_st = -stride / 2 + stride * u_st
    y_sw = stride / 2 - stride * (0.5 - 0.5 * np.cos(np.pi * u_sw))
    y = centre + np.where(stance, y_st, y_sw)
    z = p.body_height - np.where(stance, 0.0, p.lift * np.sin(np.pi * u_sw))
    return y, z, stance


def posture_correction(gravity: np.ndarray, gyro: np.ndarray, p: TrotParams) -> np.ndarray:
    """Leg-length change per leg (..., 4) that levels the body.

    Body-frame gravity g = (sin(pitch), -sin(roll), -cos) for pitch nose-down and roll right-side-down
    positive, so the low side's legs are lengthened: dz = roll_gain * g_y * side + pitch_gain * g_x * fore,
    plus a rate term on the gyro (rad/s) that damps the motion.
    """
    g = np.asarray(gravity, dtype=np.float64)
    w = np.asarray(gyro, dtype=np.float64)
    roll_term = (p.roll_gain * g[..., 1] - p.rate_gain * w[..., 0])[..., None] * SIDE
    pitch_term = (p.pitch_gain * g[..., 0] + p.rate_gain * w[..., 1])[..., None] * FORE
    return roll_term + pitch_term


def trot_joint_targets(phase: np.ndarray, p: TrotParams, dz: np.ndarray | float = 0.0,
                       stride: np.ndarray | None = None) -> np.ndarray:
    """Model joint angles (radians, vendor leg order) of the trot at `phase`, shape (..., 8).

    `dz` (..., 4) lengthens each stance leg (posture feedback); swing legs keep their clearance;
    `stride` (..., 4) sets each leg's stride (commands)."""
    y, z, stance = foot_targets(phase, p, stride)
    z = z + np.where(stance, dz, 0.0)
    hip, knee = leg_ik(y, z)
    # Left-leg servo angles equal model angles on both sides: the right side's servo sign flip and
    # its model sign flip cancel (robot.LEG_SIGNS applies to servo degrees only).
    return np.stack([hip, knee], axis=-1).reshape(*hip.shape[:-1], robot.N_LEG)


class TrotGait:
    """Diagonal trot expert: observation(s) -> action(s), reading the gait clock from the observation.

    `clock` is the slice of the gait clock (sin, cos) in the observation (env.obs_layout["clock"]);
    `gait_period` and `dt` give the one-step lead that compensates the servo's lag; `command`, the
    slice of the (scaled) command, makes it the commanded trot.
    """

    def __init__(self, params: TrotParams = TrotParams(), clock: slice = _DEFAULT_LAYOUT["clock"],
                 gait_period: float | None = None, dt: float | None = None, gravity: slice = _DEFAULT_LAYOUT["gravity"],
                 gyro: slice = _DEFAULT_LAYOUT["gyro"], command: slice | None = None) -> None:
        self.params, self.clock, self.gravity, self.gyro, self.command = params, clock, gravity, gyro, command
        period = EnvConfig().gait_period if gait_period is None else gait_period
        dt = EnvConfig().ctrl_dt if dt is None else dt
        self.lead = params.lead * dt / period
        self.duty_period = params.duty * period

    def phase_from_obs(self, obs: np.ndarray) -> np.ndarray:
        obs = obs["state"] if isinstance(obs, dict) else obs
        c = np.asarray(obs)[..., self.clock]
        return (np.arctan2(c[..., 0], c[..., 1]) / (2 * np.pi)) % 1.0

    def action_at(self, phase: np.ndarray, dz: np.ndarray | float = 0.0, stride: np.ndarray | None = None
                  ) -> np.ndarray:
        q = trot_joint_targets(np.asarray(phase) + self.lead, self.params, dz, stride)
        return np.clip(robot.leg_rad_to_action(q), -1.0, 1.0).astype(np.float32)

    def strides_for(self, vx, wz) -> np.ndarray:
        """Per-leg strides (..., 4) for a command in m/s and rad/s."""
        return command_strides(vx, wz, self.params, self.duty_period)

    def __call__(self, obs) -> np.ndarray:
        vec = np.asarray(obs["state"] if isinstance(obs, dict) else obs)
        p = self.params
        dz = 0.0
        if p.roll_gain or p.pitch_gain or p.rate_gain:
            dz = posture_correction(vec[..., self.gravity], vec[..., self.gyro] / GYRO_SCALE, p)
        stride = None
        if self.command is not None:
            cmd = vec[..., self.command]
            stride = self.strides_for(cmd[..., 0] / CMD_VX_SCALE, cmd[..., 1] / CMD_WZ_SCALE)
        return self.action_at(self.phase_from_obs(vec), dz, stride)

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = True):
        """SB3-style `predict`, so the gait can stand in for a trained model (returns (actions, state))."""
        return self(obs), state

    @classmethod
    def for_config(cls, cfg: EnvConfig, params: TrotParams = TrotParams()) -> "TrotGait":
        """The trot for observations of an env built from `cfg` (no env needed)."""
        lay = frame_layout(cfg.obs.ultrasonic, cfg.command.enabled)
        return cls(params, lay["clock"], cfg.gait_period, cfg.ctrl_dt, lay["gravity"], lay["gyro"], lay.get("command"))

    @classmethod
    def for_env(cls, env, params: TrotParams = TrotParams()) -> "TrotGait":
        base = env.unwrapped if hasattr(env, "unwrapped") else env
        return cls.for_config(base.cfg, params)
