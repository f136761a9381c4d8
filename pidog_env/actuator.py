"""PiDog's servos in MuJoCo: a DC motor behind a P loop, power-limited like the real thing.

A hobby position servo (PiDog's MG90S-class micro servos) is a DC motor, a gear train and a proportional
position loop that drives the motor with a PWM duty cycle proportional to the angle error, saturating
within a few degrees. Its output torque therefore falls linearly with speed (the back-EMF):

    tau(w) = s * tau_s - b * w,      b = tau_s / w0   (motoring; at most s^2 * tau_s * w0 / 4 of power)

with `tau_s` the stall torque, `w0` the no-load speed (both output-shaft figures at the nominal supply),
and `s` the supply factor (motor torque and the P loop's gain scale with the supply voltage). This is the
Rhoban BAM / Open Duck Mini model, mapped onto MuJoCo's `<position>` actuator:

* the P loop: gain `s * kp`, kv 0, force limit +-s * (tau_s + frictionloss) (`actuator_forcerange`). The
  limit is the motor's torque before the gears' friction loss, so that the output stalls at s * tau_s;
* the back-EMF and viscous losses: joint damping `b` (`dof_damping`), *outside* the force clip, so a joint
  at speed w has at most s * tau_s - b * w left (MuJoCo's own kv sits inside the clip: there a joint still
  got the full torque at full speed);
* gear friction: `dof_frictionloss` (made stiff: `dof_solref` at two physics steps); the gear-reflected
  rotor inertia: `dof_armature`;
* a command dead time of whole physics steps (`ServoDrive`): the PWM frame wait and the servo's own
  electronics between a written command and the motor's response;
* the command quantization of the vendor's PWM (`quantize`): robot-hat writes int(pulse / 20 ms x 4095),
  4.88 us per count, 0.44 deg;
* optionally, a supply that sags when the servos together draw more current than the 5 V rail gives
  (`SupplySag`; the Robot HAT's one DC-DC feeds all 12 servos and the Raspberry Pi).

Interface (the env, `bench/actuator_check.py` and the system identification use the same code):

    params = ServoParams.from_physical(robot.PhysicalParams())      # the priors, or identified values
    apply(model, params, supply=1.0, per_joint_scale=None)          # writes the MjModel fields
    drive = ServoDrive(data.ctrl[act_slice], dead_substeps=params.dead_substeps(model.opt.timestep),
                       signs=robot.LEG_SIGNS)                       # signs: quantize like the vendor PWM
    drive.reset(q0)
    each control step: drive.command(target); drive.advance(model, data, frame_skip)

`apply` works on any model whose servo joints and position actuators share names (the whole robot, or
a robot on a stand with one leg hanging free); `ServoParams` fields may be per-joint arrays.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np

from pidog_env import robot


@dataclass(frozen=True)
class ServoParams:
    """One servo type's parameters, SI units; each field a number or an array with one value per joint.

    stall_torque and no_load_speed are output-shaft figures at supply factor 1 (what a datasheet, or a
    measurement at the servo horn, gives); the damping b = stall_torque / no_load_speed is derived."""

    stall_torque: float | np.ndarray      # N m
    no_load_speed: float | np.ndarray     # rad/s
    kp: float | np.ndarray                # N m/rad: the P loop's torque per radian of error (unsaturated)
    frictionloss: float | np.ndarray      # N m: the gear train's dry friction
    armature: float | np.ndarray          # kg m^2: the rotor's inertia reflected through the gears
    dead_time: float                      # s: command to first motor response

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = np.asarray(getattr(self, f.name), dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"servo {f.name} must be finite, got {getattr(self, f.name)}")
            positive = f.name in ("stall_torque", "no_load_speed", "kp")
            if np.any(value <= 0) if positive else np.any(value < 0):
                raise ValueError(f"servo {f.name} must be {'> 0' if positive else '>= 0'}, got {getattr(self, f.name)}")

    @property
    def damping(self) -> float | np.ndarray:
        """b (N m s/rad): back-EMF and viscous loss, the slope of the torque-speed line."""
        return np.divide(self.stall_torque, self.no_load_speed)

    def motor_torque(self, supply: float | np.ndarray = 1.0) -> float | np.ndarray:
        """The force limit: the motor's stall torque before the gears' friction loss, at `supply`."""
        return np.multiply(supply, np.add(self.stall_torque, self.frictionloss))

    def dc_line(self, speed: float | np.ndarray, supply: float | np.ndarray = 1.0) -> float | np.ndarray:
        """The most torque the motor can deliver in the direction of motion at `speed` (rad/s), before the
        gears' friction: motor_torque(supply) - b |speed| (its output is frictionloss less)."""
        return self.motor_torque(supply) - self.damping * np.abs(speed)

    def peak_power(self, supply: float | np.ndarray = 1.0) -> float | np.ndarray:
        """The most mechanical power the motor can deliver (W): the DC line's maximum, at half speed."""
        return self.motor_torque(supply) ** 2 / (4 * self.damping)

    @classmethod
    def from_physical(cls, p: "robot.PhysicalParams") -> "ServoParams":
        """The servo values of `robot.PhysicalParams` (its priors, or the values identified on a robot)."""
        return cls(stall_torque=p.servo_torque, no_load_speed=p.servo_speed, kp=p.servo_kp,
                   frictionloss=p.joint_friction, armature=p.armature, dead_time=p.servo_dead_time)

    def dead_substeps(self, sim_dt: float) -> int:
        """The dead time in whole physics steps of `sim_dt` seconds (nearest)."""
        return int(math.floor(self.dead_time / sim_dt + 0.5))


def servo_joints(model: mujoco.MjModel, joints: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(actuator ids, dof addresses) of the servos `joints` (default: every one of `robot.ALL_JOINTS` the
    model has); each servo is a position actuator named like its hinge joint."""
    if joints is None:
        names = {model.joint(i).name for i in range(model.njnt)}
        joints = [j for j in robot.ALL_JOINTS if j in names]
    acts = np.array([model.actuator(j).id for j in joints], dtype=np.int64)
    dofs = np.array([model.jnt_dofadr[model.joint(j).id] for j in joints], dtype=np.int64)
    return acts, dofs


def apply(model: mujoco.MjModel, params: ServoParams, supply: float = 1.0,
          per_joint_scale: float | np.ndarray | None = None, joints: Sequence[str] | None = None) -> None:
    """Write the servo model into `model` for `joints` (default: every servo joint the model has).

    `supply` (the supply factor s, 1 at the nominal 5 V rail) and `per_joint_scale` (a servo's own
    strength, one factor per joint) multiply the P gain and the motor torque alike; damping, friction
    and armature are the motor's and gears' and do not change with the supply."""
    acts, dofs = servo_joints(model, joints)
    scale = supply * (np.ones(len(acts)) if per_joint_scale is None else np.asarray(per_joint_scale, np.float64))
    kp = scale * np.asarray(params.kp, np.float64)
    limit = params.motor_torque(scale)
    model.actuator_gainprm[acts, 0] = kp
    model.actuator_biasprm[acts, 0] = 0.0
    model.actuator_biasprm[acts, 1] = -kp
    model.actuator_biasprm[acts, 2] = 0.0                  # kv 0: the back-EMF is joint damping, outside the clip
    model.actuator_forcelimited[acts] = 1
    model.actuator_forcerange[acts, 0] = -limit
    model.actuator_forcerange[acts, 1] = limit
    model.dof_damping[dofs] = params.damping
    model.dof_frictionloss[dofs] = params.frictionloss
    # MuJoCo's friction loss is a soft constraint: with its default 20 ms time constant it yields like a
    # damper up to a few rad/s (a stalled servo crept and the output line came out 7 % too strong). The
    # stiffest the time step allows (2 steps) makes it dry friction.
    model.dof_solref[dofs, 0] = 2 * model.opt.timestep
    model.dof_solref[dofs, 1] = 1.0
    model.dof_armature[dofs] = params.armature


def quantize(q_rad: np.ndarray, signs: np.ndarray = robot.LEG_SIGNS) -> np.ndarray:
    """Joint targets (model radians) as the vendor PWM produces them: robot-hat maps the servo angle
    -90..90 deg to a 500..2500 us pulse and writes int(pulse / 20000 us x 4095) timer counts, so the
    servo sees whole counts of 4.88 us (0.44 deg), rounded down in servo degrees."""
    lo, hi = robot.SERVO_PULSE_US
    deg = np.clip(robot.model_rad_to_servo_deg(q_rad, signs), -90.0, 90.0)
    pulse = (deg + 90.0) * (hi - lo) / 180.0 + lo
    # (the 1e-9 count keeps a value that is already a whole count on it, despite rounding)
    counts = np.floor(pulse / robot.SERVO_PWM_PERIOD_US * robot.SERVO_PWM_COUNTS + 1e-9)
    pulse = counts * robot.SERVO_PWM_PERIOD_US / robot.SERVO_PWM_COUNTS
    return robot.servo_deg_to_model_rad((pulse - lo) * 180.0 / (hi - lo) - 90.0, signs)


class ServoDrive:
    """The servos' command path inside the physics: a commanded target reaches the actuators
    `dead_substeps` physics steps later (a dead time longer than a control step queues the commands).

    `ctrl` is a view of the servos' entries of `MjData.ctrl` (the actuators `apply` wrote); with `signs`
    (the servos' model <-> servo-degree signs) each command is quantized like the vendor PWM first.
    With a `sag`, the supply is recomputed every physics step from the servos' current (`SupplySag`)."""

    def __init__(self, ctrl: np.ndarray, dead_substeps: int, signs: np.ndarray | None = None,
                 sag: "SupplySag | None" = None) -> None:
        if dead_substeps < 0:
            raise ValueError(f"dead_substeps must be >= 0, got {dead_substeps}")
        self.ctrl, self.dead, self.signs, self.sag = ctrl, int(dead_substeps), signs, sag
        self._pending: deque[list] = deque()       # [physics steps left, target]

    def target(self, q: np.ndarray) -> np.ndarray:
        """What the servos receive for the joint targets `q` (quantized when the drive has signs)."""
        q = np.asarray(q, dtype=np.float64)
        return quantize(q, self.signs) if self.signs is not None else q.copy()

    def reset(self, q: np.ndarray, dead_substeps: int | None = None) -> None:
        """The servos hold `q` now, nothing pending; optionally a new dead time (an episode's draw)."""
        if dead_substeps is not None:
            if dead_substeps < 0:
                raise ValueError(f"dead_substeps must be >= 0, got {dead_substeps}")
            self.dead = int(dead_substeps)
        self._pending.clear()
        self.ctrl[:] = self.target(q)

    def command(self, q: np.ndarray) -> None:
        """A new target, written now: the actuators get it after the dead time (at once without one)."""
        if self.dead == 0 and not self._pending:
            self.ctrl[:] = self.target(q)
        else:
            self._pending.append([self.dead, self.target(q)])

    def advance(self, model: mujoco.MjModel, data: mujoco.MjData, nstep: int) -> None:
        """`nstep` physics steps, each command applied once its dead time has passed."""
        pending = self._pending
        while nstep > 0:
            while pending and pending[0][0] <= 0:
                self.ctrl[:] = pending.popleft()[1]
            k = min(nstep, pending[0][0]) if pending else nstep
            if self.sag is not None:
                k = 1
                self.sag.update(model, data)
            mujoco.mj_step(model, data, nstep=k)
            for p in pending:
                p[0] -= k
            nstep -= k
        while pending and pending[0][0] <= 0:       # due now: the next physics step runs with it
            self.ctrl[:] = pending.popleft()[1]


class SupplySag:
    """A 5 V rail that sags when the servos together draw more than it can give.

    A servo's motor current is its P loop's duty cycle (actuator force / force limit) times its stall
    current at the supply; with the Raspberry Pi's `base_current` it must stay under the converter's
    `current_limit` (Robot HAT V4: 3 A, V5: 5 A, `robot.HAT_CURRENT_LIMIT_A`). Above it the converter's
    voltage drops until the current fits: the supply factor becomes
    `supply x min(1, (limit - base) / servo current at supply)`, recomputed from the last physics step's
    duty cycles (a first-order model: the back-EMF's share of the current is left out). `apply` is rerun
    with the sagged factor every physics step, so the drive then steps the physics one step at a time."""

    def __init__(self, params: ServoParams, stall_current: float, current_limit: float, base_current: float = 0.0,
                 supply: float = 1.0, per_joint_scale: np.ndarray | None = None,
                 joints: Sequence[str] | None = None) -> None:
        if stall_current <= 0 or current_limit <= base_current:
            raise ValueError("stall_current must be > 0 and current_limit above base_current")
        self.params, self.stall_current, self.limit, self.base = params, stall_current, current_limit, base_current
        self.supply, self.scale, self.joints = supply, per_joint_scale, joints
        self.factor = supply                          # the supply factor of the last physics step
        self._acts: np.ndarray | None = None

    def current(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        """The servos' total current (A) at the unsagged supply, from the last physics step's duty cycles."""
        if self._acts is None:
            self._acts = servo_joints(model, self.joints)[0]
        acts = self._acts
        duty = np.abs(data.actuator_force[acts]) / model.actuator_forcerange[acts, 1]
        scale = 1.0 if self.scale is None else np.asarray(self.scale)
        return float(np.sum(self.stall_current * self.supply * scale * duty))

    def update(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        """The supply factor for the next physics step, written into `model`."""
        demand, available = self.current(model, data), self.limit - self.base
        self.factor = self.supply * min(1.0, available / demand) if demand > 0 else self.supply
        apply(model, self.params, self.factor, self.scale, self.joints)
        return self.factor
