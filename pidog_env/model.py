"""Load the PiDog MJCF and apply the facts owned by `pidog_env.robot`.

The XML holds the shapes and masses; the leg dimensions (which the robot runtime's kinematics use too),
joint ranges, the servo model (`pidog_env.actuator`), the total mass, the ultrasonic range and the `lie`/`stand`/`sit`
keyframes come from `robot.py` here, through MjSpec, and gravity and the physics timestep from
`observation.GRAVITY` and `EnvConfig.sim_dt`, so no number lives twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from pidog_env import actuator
from pidog_env import mjcf_names as names
from pidog_env import robot
from pidog_env.config import EnvConfig
from pidog_env.kinematics import leg_fk
from pidog_env.observation import GRAVITY

ASSETS = Path(__file__).resolve().parent / "assets"
SCENE_XML = ASSETS / "scene.xml"
KEYFRAMES = ("lie", "stand", "sit")
KEYFRAME_CLEARANCE = 0.0005              # m between the feet and the floor in the keyframes
STAND_HEIGHT = 0.4                       # m: the welded body of `load_model(fixed_base=True)`, legs far off the floor


def _keyframe_qpos(pose: str, foot_radius: float) -> np.ndarray:
    """Free-joint pose that puts the feet of leg pose `pose` on the floor, plus the 12 joint angles."""
    servo = robot.POSES_DEG[pose]
    # Left-leg servo angles give the leg geometry for both sides (the sign flip mirrors the servo only).
    _, z_front = leg_fk(np.deg2rad(servo[0]), np.deg2rad(servo[1]))
    _, z_hind = leg_fk(np.deg2rad(servo[4]), np.deg2rad(servo[5]))
    h_front, h_hind = z_front + foot_radius, z_hind + foot_radius
    pitch = np.arctan2(h_front - h_hind, robot.HIP_SPACING_X)       # nose up when front is higher
    quat = np.array([np.cos(-pitch / 2), 0.0, np.sin(-pitch / 2), 0.0])
    root = np.concatenate([[0.0, 0.0, (h_front + h_hind) / 2 + KEYFRAME_CLEARANCE], quat])
    return np.concatenate([root, robot.full_pose_rad(pose)])


def _place_legs(spec: mujoco.MjSpec) -> None:
    """robot.py's leg dimensions into the leg bodies: the hip at its body-frame position, the thigh
    capsule down to the knee, the shin capsule forward to the foot sphere and site (zero pose)."""
    thigh, shin = robot.THIGH_LENGTH, robot.SHIN_LENGTH
    for i, leg in enumerate(robot.LEGS):
        spec.body(names.THIGH_BODIES[i]).pos = robot.HIP_POSITIONS[leg]
        spec.geom(names.THIGH_GEOMS[i]).fromto = [0.0, 0.0, 0.0, 0.0, 0.0, -thigh]
        spec.body(names.SHIN_BODIES[i]).pos = [0.0, 0.0, -thigh]
        spec.geom(names.SHIN_GEOMS[i]).fromto = [0.0, 0.0, 0.0, shin, 0.0, 0.0]
        spec.geom(names.FOOT_GEOMS[i]).pos = [shin, 0.0, 0.0]
        spec.site(names.FOOT_SITES[i]).pos = [shin, 0.0, 0.0]


SIDES = (("LF", "LH"), ("RF", "RH"))         # (front, hind) leg of each side


def leg_pairs() -> list[tuple[str, str]]:
    """Geom pairs (thigh, shin, foot of the front leg x the same of the hind leg, each side) that collide:
    the legs of one side can reach each other (118 mm reach > 117 mm hip spacing) and jam on the real robot."""
    segments = dict(zip(robot.LEGS, zip(names.THIGH_GEOMS, names.SHIN_GEOMS, names.FOOT_GEOMS)))
    return [(a, b) for front, hind in SIDES for a in segments[front] for b in segments[hind]]


def build_spec(params: robot.PhysicalParams = robot.PhysicalParams()) -> mujoco.MjSpec:
    """MjSpec of the scene with robot.py's limits and keyframes applied (the servo model and the total mass
    are applied to the compiled model by `load_model`)."""
    spec = mujoco.MjSpec.from_file(str(SCENE_XML))
    spec.option.gravity = [0.0, 0.0, -GRAVITY]
    _place_legs(spec)
    spec.sensor(names.ULTRASONIC).cutoff = robot.ULTRASONIC_MAX_RANGE
    limits = np.deg2rad(robot.ALL_LIMITS_DEG) * robot.ALL_SIGNS[:, None]
    limits.sort(axis=1)                                  # a sign flip swaps lower/upper bounds
    for name, (lo, hi) in zip(robot.ALL_JOINTS, limits):
        spec.joint(name).range = [lo, hi]
        spec.actuator(name).ctrlrange = [lo, hi]
    # Knees (the thigh capsules' lower ends) on the floor; a shin-floor pair would also touch next to every
    # stance foot (the foot sphere is only 1 mm larger than the shin capsule) and change the gait's contacts.
    for g1, g2 in leg_pairs() + [(g, names.FLOOR) for g in names.THIGH_GEOMS]:
        spec.add_pair(geomname1=g1, geomname2=g2)
    # One contact sensor per side counts the contacts between the front leg's subtree and the hind leg's
    # (data "found"): the self_collision reward reads two numbers instead of scanning the contact list.
    thigh_body = dict(zip(robot.LEGS, names.THIGH_BODIES))
    for name, (front, hind) in zip(names.SELF_COLLISION, SIDES):
        spec.add_sensor(name=name, type=mujoco.mjtSensor.mjSENS_CONTACT,
                        objtype=mujoco.mjtObj.mjOBJ_XBODY, objname=thigh_body[front],
                        reftype=mujoco.mjtObj.mjOBJ_XBODY, refname=thigh_body[hind], intprm=[1, 0, 1])
    foot_radius = spec.geom(names.FOOT_GEOMS[0]).size[0]            # the foot sphere's, in pidog.xml
    for pose in KEYFRAMES:
        qpos = _keyframe_qpos(pose, foot_radius)
        spec.add_key(name=pose, qpos=qpos, ctrl=qpos[7:])
    return spec


def load_model(params: robot.PhysicalParams = robot.PhysicalParams(), sim_dt: float | None = None,
               fixed_base: bool = False) -> mujoco.MjModel:
    """Compiled PiDog model whose total mass equals `params.total_mass` (torso absorbs the rest), with the
    physics timestep `sim_dt` (default: `EnvConfig`'s) and the servo model (`actuator.apply`) of `params`
    on all 12 servos. `fixed_base`: the robot on a stand, its body welded `STAND_HEIGHT` above the floor
    and every leg hanging free (no free joint: qpos is the 12 joint angles; no keyframes)."""
    spec = build_spec(params)
    spec.option.timestep = EnvConfig().sim_dt if sim_dt is None else sim_dt
    if fixed_base:
        torso = spec.body(names.TORSO)
        for joint in list(torso.joints):
            spec.delete(joint)                           # the free joint: the body is welded
        torso.pos = [0.0, 0.0, STAND_HEIGHT]
        for key in list(spec.keys):
            spec.delete(key)
    model = spec.compile()
    joints = tuple(model.joint(i).name for i in range(model.njnt) if model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE)
    if joints != robot.ALL_JOINTS or model.nu != len(robot.ALL_JOINTS):
        raise RuntimeError(f"pidog.xml joint order {joints} differs from robot.ALL_JOINTS")
    actuator.apply(model, actuator.ServoParams.from_physical(params))
    torso = model.body(names.TORSO).id
    others = model.body_mass.sum() - model.body_mass[torso]
    new_mass = params.total_mass - others
    if new_mass <= 0.1:
        raise ValueError(f"total_mass {params.total_mass} kg is too small for the limbs ({others:.3f} kg)")
    model.body_inertia[torso] *= new_mass / model.body_mass[torso]
    model.body_mass[torso] = new_mass
    return model


@dataclass(frozen=True)
class ModelIndex:
    """Addresses into qpos/qvel/ctrl/sensordata, resolved once per model by name."""

    leg_qpos: slice            # contiguous (asserted): slices are views, cheaper than fancy indexing
    leg_qvel: slice
    leg_act: slice
    torso_body: int
    accel: slice
    gyro: slice
    ultrasonic: int
    torso_touch: int
    head_touch: int
    self_collision: tuple[int, int]   # sensordata addresses: leg-to-leg contacts, left and right side

    @classmethod
    def of(cls, model: mujoco.MjModel) -> "ModelIndex":
        def sens(name: str) -> slice:
            s = model.sensor(name)
            return slice(int(s.adr[0]), int(s.adr[0] + s.dim[0]))

        assert sens(names.GYRO).start == sens(names.ACCEL).stop, "accelerometer and gyro must be adjacent"
        def contiguous(addresses: list[int]) -> slice:
            assert addresses == list(range(addresses[0], addresses[0] + len(addresses))), addresses
            return slice(addresses[0], addresses[0] + len(addresses))

        return cls(
            leg_qpos=contiguous([int(model.jnt_qposadr[model.joint(j).id]) for j in robot.LEG_JOINTS]),
            leg_qvel=contiguous([int(model.jnt_dofadr[model.joint(j).id]) for j in robot.LEG_JOINTS]),
            leg_act=contiguous([model.actuator(j).id for j in robot.LEG_JOINTS]),
            torso_body=model.body(names.TORSO).id,
            accel=sens(names.ACCEL), gyro=sens(names.GYRO),
            ultrasonic=sens(names.ULTRASONIC).start,
            torso_touch=sens(names.TORSO_TOUCH).start, head_touch=sens(names.HEAD_TOUCH).start,
            self_collision=tuple(sens(n).start for n in names.SELF_COLLISION),
        )


def self_collisions(data: mujoco.MjData, idx: ModelIndex) -> int:
    """Active contacts between the front and the hind leg of a side (the pairs of `leg_pairs`)."""
    a, b = idx.self_collision
    return int(data.sensordata[a] + data.sensordata[b])
