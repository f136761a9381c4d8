"""The single-leg model the identification fits: PiDog's MJCF with the body welded in the air and one leg
free (the other legs, the head and the tail removed), the env's servo model (`pidog_env.actuator.apply`)
on its two joints, and batched simulation of a command log (`mujoco.rollout`: one C loop per candidate,
no Python per physics step).

The dead time acts on the command sequence: the command written at t reaches the actuator at t + dead
time, quantized like the vendor PWM (`actuator.quantize`). The env's `ServoDrive` does this in whole
physics steps; here a physics step that a command edge falls inside gets the time-weighted mix of the two
commands, so the fit resolves the dead time finer than a step (for whole steps the two agree exactly:
tests/test_sysid_fit.py). `pidog sysid fit` writes the value; the env rounds it to whole steps.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields

import mujoco
import numpy as np

from pidog_env import actuator
from pidog_env import mjcf_names as names
from pidog_env import model as pidog_model
from pidog_env import robot
from pidog_env.config import EnvConfig

BODY_HEIGHT = 0.4            # m: the welded body, far above the floor
_PRIOR = robot.PhysicalParams()


@dataclass(frozen=True)
class LegParams:
    """One servo's parameters as the identification fits them (SI units): the damping b instead of the
    no-load speed (b = stall_torque / no_load_speed), the dead time in seconds."""

    stall_torque: float = _PRIOR.servo_torque                        # N m
    damping: float = _PRIOR.servo_torque / _PRIOR.servo_speed        # N m s/rad
    kp: float = _PRIOR.servo_kp                                      # N m/rad
    frictionloss: float = _PRIOR.joint_friction                      # N m
    armature: float = _PRIOR.armature                                # kg m^2
    delay: float = _PRIOR.servo_dead_time                            # s

    @property
    def no_load_speed(self) -> float:
        return self.stall_torque / self.damping

    def servo(self) -> actuator.ServoParams:
        return actuator.ServoParams(stall_torque=self.stall_torque, no_load_speed=self.no_load_speed, kp=self.kp,
                                    frictionloss=self.frictionloss, armature=self.armature, dead_time=self.delay)

    def scaled(self, **factors: float) -> "LegParams":
        return LegParams(**{f.name: getattr(self, f.name) * factors.get(f.name, 1.0) for f in fields(self)})

    def to_dict(self) -> dict:
        return asdict(self)


PARAM_NAMES = tuple(f.name for f in fields(LegParams))


def build_leg_model(leg: str, sim_dt: float | None = None) -> mujoco.MjModel:
    """PiDog with its body welded BODY_HEIGHT above the floor and only `leg` (its hip and knee) left."""
    if leg not in robot.LEGS:
        raise ValueError(f"leg must be one of {robot.LEGS}, got {leg!r}")
    spec = pidog_model.build_spec()
    spec.option.timestep = EnvConfig().sim_dt if sim_dt is None else sim_dt
    for pair in list(spec.pairs):
        spec.delete(pair)
    for sensor in list(spec.sensors):
        spec.delete(sensor)
    for key in list(spec.keys):
        spec.delete(key)
    keep = {f"{leg}_hip", f"{leg}_knee"}
    for act in list(spec.actuators):
        if act.name not in keep:
            spec.delete(act)
    torso = spec.body(names.TORSO)
    for joint in list(torso.joints):
        spec.delete(joint)                               # the free joint: the body is welded
    torso.pos = [0.0, 0.0, BODY_HEIGHT]
    for i, other in enumerate(robot.LEGS):
        if other != leg:
            spec.delete(spec.body(names.THIGH_BODIES[i]))
    for name in ("neck_yaw", "tail"):
        spec.delete(spec.body(name))
    model = spec.compile()
    assert model.nq == 2 and model.nu == 2, (model.nq, model.nu)
    return model


def apply_params(model: mujoco.MjModel, p: LegParams) -> None:
    """The env's servo model on both joints of the leg model (the dead time acts on the commands)."""
    actuator.apply(model, p.servo())


def delayed_controls(t_cmd: np.ndarray, q_cmd: np.ndarray, delay: float, dt: float, n_steps: int) -> np.ndarray:
    """Per physics step (n_steps x joints) the command in force: command k from t_cmd[k] + delay until the
    next one, the first one before that. A step an edge falls inside gets the time-weighted mix."""
    t_cmd = np.asarray(t_cmd, dtype=np.float64) + delay
    step_start = np.arange(n_steps) * dt
    # fraction of step j [j dt, (j+1) dt) covered by command k: integrate the held command over the step
    k0 = np.searchsorted(t_cmd, step_start, side="right") - 1
    k1 = np.searchsorted(t_cmd, step_start + dt, side="right") - 1
    k0c, k1c = np.clip(k0, 0, None), np.clip(k1, 0, None)
    out = q_cmd[k0c].copy()
    mixed = k1c != k0c
    if mixed.any():
        # At most one edge per step when commands are further apart than a step (50 Hz vs 4 ms): split it.
        j = np.nonzero(mixed)[0]
        edge = t_cmd[k1c[j]]
        w = np.clip((step_start[j] + dt - edge) / dt, 0.0, 1.0)[:, None]
        out[j] = (1 - w) * q_cmd[k1c[j] - 1] + w * q_cmd[k1c[j]]
    return out


class LegSimulator:
    """Simulates a command log on the leg model for many parameter sets at once."""

    def __init__(self, leg: str, t_cmd: np.ndarray, q_cmd: np.ndarray, duration: float, sim_dt: float | None = None,
                 nthread: int = 1) -> None:
        self.model = build_leg_model(leg, sim_dt)
        self.dt = float(self.model.opt.timestep)
        i = robot.LEGS.index(leg)
        self.t_cmd = np.asarray(t_cmd, dtype=np.float64)
        # what the servos receive: the vendor PWM's whole counts
        self.q_cmd = actuator.quantize(np.asarray(q_cmd, dtype=np.float64), robot.LEG_SIGNS[2 * i:2 * i + 2])
        self.n_steps = int(math.ceil(duration / self.dt)) + 1
        self.nthread = max(1, nthread)
        self.datas = [mujoco.MjData(self.model) for _ in range(self.nthread)]
        self.q0 = self.q_cmd[0]

    def run(self, params: list[LegParams]) -> tuple[np.ndarray, np.ndarray]:
        """(times of the states, n_steps + 1; joint angles and velocities, len(params) x (n_steps + 1) x 2 x 2)."""
        from mujoco import rollout
        models, controls = [], []
        for p in params:
            m = copy.copy(self.model) if len(params) > 1 else self.model
            apply_params(m, p)
            models.append(m)
            controls.append(delayed_controls(self.t_cmd, self.q_cmd, p.delay, self.dt, self.n_steps))
        data = self.datas[0]
        data.qpos[:] = self.q0
        data.qvel[:] = 0.0
        state0 = np.empty(mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
        mujoco.mj_getState(self.model, data, state0, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        state, _ = rollout.rollout(models, self.datas, state0[None], np.stack(controls),
                                   control_spec=mujoco.mjtState.mjSTATE_CTRL.value)
        # FULLPHYSICS state: time, qpos, qvel, act, ...
        q = np.concatenate([np.tile(self.q0, (len(params), 1, 1)), state[:, :, 1:3]], axis=1)
        qd = np.concatenate([np.zeros((len(params), 1, 2)), state[:, :, 3:5]], axis=1)
        times = np.arange(self.n_steps + 1) * self.dt
        return times, np.stack([q, qd], axis=-1)


def sample(times: np.ndarray, traj: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Joint angles at times `t` from simulated states (..., steps, joints, [q, qd]): cubic Hermite
    interpolation between the physics steps (angles and velocities). Returns (..., len(t), joints)."""
    dt = times[1] - times[0]
    j = np.clip(((t - times[0]) / dt).astype(int), 0, len(times) - 2)
    s = np.clip((t - times[j]) / dt, 0.0, 1.0)[:, None]
    q, v = traj[..., 0], traj[..., 1] * dt
    q0, q1 = np.take(q, j, axis=-2), np.take(q, j + 1, axis=-2)
    v0, v1 = np.take(v, j, axis=-2), np.take(v, j + 1, axis=-2)
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * q0 + h10 * v0 + h01 * q1 + h11 * v1
