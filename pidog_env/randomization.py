"""Domain randomization: what each PiDog-v2 episode draws.

The ranges, their defaults and bounds live in `config.RandomizationConfig` (one field per range); each draw
below names the field it reads. At every reset the env restores the nominal model (`NominalModel`); with
`randomization.enabled` it then draws the episode (`Randomizer.draw`), the first push (`next_push_step`) and
the start pose (`Randomizer.perturb_start`), in that order, all from the env's seeded generator. Without
randomization an episode runs on `EpisodeDraw.nominal`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import mujoco
import numpy as np

from pidog_env import actuator
from pidog_env import mjcf_names as names
from pidog_env import robot
from pidog_env.actuator import ServoParams
from pidog_env.config import EnvConfig, RandomizationConfig
from pidog_env.model import ModelIndex

# The start heading, +- rad: the robot is never set down exactly. On the flat floor it changes nothing a state
# policy sees (speeds are measured along the start heading); the camera sees the floor turned.
START_YAW_RAD = 0.3
# The servo dead time varies by this many physics steps (4 ms) around `physical.servo_dead_time`: about what
# the identification resolves (PACE and the leg fit in `pidog sysid fit` find a delay to a few ms).
DEAD_TIME_SPREAD_STEPS = 1


@dataclass
class EpisodeDraw:
    """The episode's draws that live outside the MjModel (the model's own are written into it by `draw`)."""

    calibration: np.ndarray          # rad per leg joint, added to every joint target: servo horn misalignment
    latency: int                     # control steps between the policy's action and the servos
    dead_substeps: int               # physics steps between a servo command and the servo acting on it
    supply: float                    # the servos' supply factor (1: the nominal 5 V rail)
    imu_delay: int                   # age of the IMU sample the policy sees, in physics steps
    imu_bias: list[float]            # accel x, y, z (m/s^2) then gyro x, y, z (rad/s), constant over the episode
    imu_noise: np.ndarray | None     # noise std per IMU sample, same order; None: noiseless
    physics: np.ndarray | None = None   # `physics_features` of this draw (the teacher's privileged input)

    @classmethod
    def nominal(cls, cfg: EnvConfig, friction: float) -> "EpisodeDraw":
        """The robot as built: no offsets, no latency, no bias or noise, the servos' dead time and supply as
        in `cfg.physical`; the IMU sample's nominal age (`EnvConfig.imu_delay_substeps`, the midpoint of its
        randomized range); `friction` is the model's floor friction (`Randomizer.nominal_friction`)."""
        dead = ServoParams.from_physical(cfg.physical).dead_substeps(cfg.sim_dt)
        draw = cls(np.zeros(robot.N_LEG), 0, dead, 1.0, cfg.imu_delay_substeps, [0.0] * 6, None)
        draw.physics = physics_features(draw, dead, friction=friction, torso_mass=1.0, parts_mass=1.0,
                                        com_shift=np.zeros(2), servo_spread=np.ones((3, N_SERVOS)))
        return draw


# The teacher's privileged input (`obs.episode_physics`): what an episode drew, each entry scaled to order 1
# around the robot as built with fixed scales (the default ranges' half-widths), so a value past a training
# range reads past 1 and means the same under every range. Order and scales, one row each:
N_SERVOS = len(robot.ALL_JOINTS)
PHYSICS_FEATURES: tuple[tuple[str, int, str], ...] = (
    ("friction", 1, "(mu - 0.85) / 0.35"),
    ("torso_mass", 1, "(scale - 1) / 0.15"),
    ("parts_mass", 1, "(mean scale of the other parts - 1) / 0.15"),
    ("com_shift", 2, "torso centre-of-mass shift x, y / 5 mm"),
    ("supply", 1, "(s - 0.95) / 0.1"),
    ("servo_torque", N_SERVOS, "(stall-torque spread - 1) / 0.1, per servo"),
    ("servo_speed", N_SERVOS, "(no-load-speed spread - 1) / 0.1, per servo"),
    ("servo_kp", N_SERVOS, "(P-gain spread - 1) / 0.1, per servo"),
    ("dead_time", 1, "dead time - nominal, physics steps"),
    ("calibration", robot.N_LEG, "offset / 3 deg, per leg joint"),
    ("latency", 1, "action delay - 1, control steps"),
    ("imu_delay", 1, "IMU sample age - 1, physics steps"),
    ("imu_bias", 6, "accel bias / 0.3 m/s^2, gyro bias / 0.03 rad/s"),
)
PHYSICS_SIZE = sum(n for _, n, _ in PHYSICS_FEATURES)
PUSH_FEATURES = 3          # the last push: its kick x, y / 0.06 m/s and the seconds since it (capped at 1 s)
PRIVILEGED_SIZE = PHYSICS_SIZE + PUSH_FEATURES


def physics_features(draw: "EpisodeDraw", nominal_dead: int, friction: float, torso_mass: float,
                     parts_mass: float, com_shift: np.ndarray, servo_spread: np.ndarray) -> np.ndarray:
    """The rows of `PHYSICS_FEATURES` for one episode."""
    bias = np.asarray(draw.imu_bias) / np.repeat([0.3, 0.03], 3)
    return np.concatenate([
        [(friction - 0.85) / 0.35, (torso_mass - 1) / 0.15, (parts_mass - 1) / 0.15], np.asarray(com_shift) / 0.005,
        [(draw.supply - 0.95) / 0.1], ((servo_spread - 1) / 0.1).ravel(), [draw.dead_substeps - nominal_dead],
        draw.calibration / np.deg2rad(3.0), [draw.latency - 1, draw.imu_delay - 1], bias]).astype(np.float64)


class NominalModel:
    """Copies of the model parameters that domain randomization changes, restored at every reset."""

    def __init__(self, m: mujoco.MjModel) -> None:
        self.geom_friction = m.geom_friction.copy()
        self.body_mass = m.body_mass.copy()
        self.body_inertia = m.body_inertia.copy()
        self.body_ipos = m.body_ipos.copy()
        self.kp = m.actuator_gainprm[:, 0].copy()
        self.biasprm = m.actuator_biasprm.copy()
        self.forcerange = m.actuator_forcerange.copy()
        self.damping = m.dof_damping.copy()
        self.frictionloss = m.dof_frictionloss.copy()
        self.subtreemass = m.body_subtreemass.copy()

    def restore(self, m: mujoco.MjModel) -> None:
        m.geom_friction[:] = self.geom_friction
        m.body_mass[:] = self.body_mass
        m.body_inertia[:] = self.body_inertia
        m.body_ipos[:] = self.body_ipos
        m.actuator_gainprm[:, 0] = self.kp
        m.actuator_biasprm[:] = self.biasprm
        m.actuator_forcerange[:] = self.forcerange
        m.dof_damping[:] = self.damping
        m.dof_frictionloss[:] = self.frictionloss
        m.body_subtreemass[:] = self.subtreemass


class Randomizer:
    """Draws an episode's physics and sensor parameters into one env's model."""

    def __init__(self, model: mujoco.MjModel, idx: ModelIndex, servo: ServoParams) -> None:
        self.model, self.idx, self.servo = model, idx, servo
        self.nominal_dead = servo.dead_substeps(float(model.opt.timestep))
        self.n_servos = len(actuator.servo_joints(model)[0])
        self.nominal = NominalModel(model)
        self._floor_geom = model.geom(names.FLOOR).id
        self._foot_geoms = np.array([model.geom(g).id for g in names.FOOT_GEOMS])
        self.nominal_friction = float(model.geom_friction[self._floor_geom, 0])     # the robot as built

    def restore(self) -> None:
        """The nominal model again (every reset, before any draw)."""
        self.nominal.restore(self.model)

    def draw(self, dr: RandomizationConfig, rng: np.random.Generator) -> EpisodeDraw:
        """A new episode: writes the drawn physics into the model and returns the rest."""
        m, nom = self.model, self.nominal
        # Sliding friction of the floor and the feet, one value for both (`friction`): floors and foot wear.
        mu = rng.uniform(*dr.friction)
        m.geom_friction[self._floor_geom, 0] = mu
        m.geom_friction[self._foot_geoms, 0] = mu
        # A mass multiplier per body, inertia scaled alike (`mass_scale`): the unpublished part masses.
        scale = rng.uniform(*dr.mass_scale, size=m.nbody)
        scale[0] = 1.0
        m.body_mass[:] = nom.body_mass * scale
        m.body_inertia[:] = nom.body_inertia * scale[:, None]
        update_subtree_mass(m)
        # The torso's centre of mass shifted in x and y (`com_offset`): battery and board placement.
        m.body_ipos[self.idx.torso_body, :2] += rng.uniform(-dr.com_offset, dr.com_offset, 2)
        # The servos (`supply`, `servo_spread`): one supply factor scales every servo's torque and P gain
        # (the 5 V rail is regulated to 5.17-5.33 V but shared by the 12 servos and the Pi through a 3 A (HAT
        # V4) or 5 A (V5) converter, and sags when several pull at once: users report Pi brown-outs; down to
        # 0.85 for a sagging rail and worn servos, up to 1.05 for the regulator's top; MicroDuck randomizes
        # its supply, 6.5-8.2 V, in place of independent kp and torque scales). Around it each servo's stall
        # torque, no-load speed, P gain and friction spread by `servo_spread` (+-10 %: unit-to-unit spread
        # around the priors or the identified values; Open Duck randomizes kp x0.9-1.1 around its BAM fit).
        supply = rng.uniform(*dr.supply)
        n, x, p = self.n_servos, dr.servo_spread, self.servo
        spread = rng.uniform(1 - x, 1 + x, (4, n))
        servo = dataclasses.replace(p, stall_torque=p.stall_torque * spread[0], no_load_speed=p.no_load_speed * spread[1],
                                    kp=p.kp * spread[2], frictionloss=p.frictionloss * spread[3])
        actuator.apply(m, servo, supply)
        # The servos' dead time, +-DEAD_TIME_SPREAD_STEPS physics steps around its value.
        dead = self.nominal_dead + int(rng.integers(-DEAD_TIME_SPREAD_STEPS, DEAD_TIME_SPREAD_STEPS + 1))
        shift = m.body_ipos[self.idx.torso_body, :2] - nom.body_ipos[self.idx.torso_body, :2]
        draw = EpisodeDraw(
            # Per-joint offset of the commanded angle (`calibration_deg`): the servo calibration's residual.
            calibration=np.deg2rad(rng.uniform(-1, 1, robot.N_LEG) * dr.calibration_deg),
            # Action delay in control steps, inclusive range (`latency_steps`): policy output to servo motion.
            latency=int(rng.integers(dr.latency_steps[0], dr.latency_steps[1] + 1)),
            dead_substeps=max(0, dead),
            supply=float(supply),
            # IMU sample age in physics steps, inclusive range (`imu_delay_substeps`): the chip's filter and
            # output period and the read (`robot.IMU_SAMPLE_AGE_S`).
            imu_delay=int(rng.integers(dr.imu_delay_substeps[0], dr.imu_delay_substeps[1] + 1)),
            # Constant accelerometer and gyro offsets (`accel_bias`, `gyro_bias`): the IMU's calibration.
            imu_bias=(rng.uniform(-1, 1, 6) * np.repeat([dr.accel_bias, dr.gyro_bias], 3)).tolist(),
            # Per-sample noise std (`accel_noise`, `gyro_noise`); the env draws the samples as it reads the IMU.
            imu_noise=np.repeat([dr.accel_noise, dr.gyro_noise], 3),
        )
        draw.physics = physics_features(draw, self.nominal_dead, mu, float(scale[self.idx.torso_body]),
                                        float(np.mean(np.delete(scale[1:], self.idx.torso_body - 1))), shift,
                                        spread[:3])
        return draw

    def perturb_start(self, data: mujoco.MjData, dr: RandomizationConfig, rng: np.random.Generator) -> None:
        """The start pose off the stand keyframe: each leg joint by up to `init_joint_noise_deg`, and the
        heading turned by up to `START_YAW_RAD` (the robot is never set down exactly)."""
        data.qpos[self.idx.leg_qpos] += np.deg2rad(rng.uniform(-1, 1, robot.N_LEG) * dr.init_joint_noise_deg)
        yaw = rng.uniform(-START_YAW_RAD, START_YAW_RAD)
        q = np.zeros(4)
        mujoco.mju_axisAngle2Quat(q, np.array([0.0, 0.0, 1.0]), yaw)
        mujoco.mju_mulQuat(data.qpos[3:7], q, data.qpos[3:7].copy())


def next_push_step(step: int, dr: RandomizationConfig, dt: float, rng: np.random.Generator) -> int:
    """The control step of the next push: `push_interval_s` seconds after `step`."""
    lo, hi = dr.push_interval_s
    return step + int(rng.uniform(lo, hi) / dt)


def push(qvel: np.ndarray, dr: RandomizationConfig, rng: np.random.Generator) -> np.ndarray:
    """A horizontal velocity kick of the torso, up to `push_velocity` per axis: bumps, tugs and uneven
    ground, up to about half the walking speed (the trot's ~0.12 m/s): the robot should walk through them;
    kicks faster than its walk are falls of their own, which no servo model makes it survive."""
    v = dr.push_velocity
    kick = rng.uniform(-v, v, 2)
    qvel[0:2] += kick
    return kick


def update_subtree_mass(m: mujoco.MjModel) -> None:
    """Recompute `body_subtreemass` after `body_mass` changed (MuJoCo computes it once, in mj_setConst).

    MuJoCo divides by it to get the subtree centres of mass: stale, they scale with the distance from
    the origin (the tracking camera, which follows the robot's centre of mass, then lost the robot)."""
    sub = m.body_mass.copy()
    for b in range(m.nbody - 1, 0, -1):               # children have higher ids than their parents
        sub[m.body_parentid[b]] += sub[b]
    m.body_subtreemass[:] = sub
