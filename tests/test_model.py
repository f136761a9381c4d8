"""The MJCF model against the vendor facts: structure, stand height, IK/FK and the servo mapping."""

import mujoco
import numpy as np
import pytest

from pidog_env import robot
from pidog_env.kinematics import leg_fk, leg_ik
from pidog_env.model import load_model


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_twelve_hinge_joints_each_with_one_position_actuator(model):
    hinges = [model.joint(i).name for i in range(model.njnt) if model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
    assert hinges == list(robot.ALL_JOINTS)
    assert model.nu == 12
    targets = [model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu)]
    assert targets == list(robot.ALL_JOINTS)               # exactly one actuator per joint, in order
    assert np.all(model.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE)   # position servos


def test_joint_ranges_are_the_safe_envelope_in_model_coordinates(model):
    for name in robot.LEG_JOINTS:
        lo, hi = np.rad2deg(model.jnt_range[model.joint(name).id])
        assert (lo, hi) == pytest.approx((-80.0, 90.0) if name.endswith("hip") else (-45.0, 75.0))
    for name in robot.LEG_JOINTS:                          # the vendor's own poses lie inside it
        j = robot.LEG_JOINTS.index(name)
        for pose in ("lie", "stand", "sit"):
            assert robot.LEG_Q_MIN[j] - 1e-9 <= robot.pose_rad(pose)[j] <= robot.LEG_Q_MAX[j] + 1e-9
    lo, hi = np.rad2deg(model.jnt_range[model.joint("head_pitch").id])
    assert (lo, hi) == pytest.approx((-45.0, 30.0))


def test_total_mass_and_the_servo_model_are_parameters():
    p = robot.PhysicalParams(total_mass=0.95, servo_torque=0.15, servo_speed=12.0, servo_kp=4.0, joint_friction=0.01)
    heavy = load_model(p)
    assert heavy.body_mass.sum() == pytest.approx(0.95)
    # every servo: the P loop without kv, the motor's limit before the gears' friction, the back-EMF as damping
    np.testing.assert_allclose(heavy.actuator_forcerange, np.tile([-0.16, 0.16], (12, 1)))
    np.testing.assert_allclose(heavy.actuator_biasprm[:, :3], np.tile([0.0, -4.0, 0.0], (12, 1)))
    np.testing.assert_allclose(heavy.dof_damping[6:], 0.15 / 12.0)
    np.testing.assert_allclose(heavy.dof_frictionloss[6:], 0.01)
    assert load_model().body_mass.sum() == pytest.approx(robot.PhysicalParams().total_mass)


def test_the_robot_on_a_stand_has_its_body_welded_and_the_same_servos():
    stand, free = load_model(fixed_base=True), load_model()
    assert stand.nq == 12 and stand.nv == 12 and stand.nkey == 0
    np.testing.assert_array_equal(stand.actuator_forcerange, free.actuator_forcerange)
    np.testing.assert_array_equal(stand.dof_damping, free.dof_damping[6:])
    data = mujoco.MjData(stand)
    mujoco.mj_forward(stand, data)
    assert data.site("LF_foot").xpos[2] > 0.25                 # the legs hang far above the floor


def test_keyframes_are_the_vendor_poses(model):
    for pose in ("lie", "stand", "sit"):
        key = model.key(pose)
        servo = robot.model_rad_to_servo_deg(key.qpos[7:15])
        np.testing.assert_allclose(servo, robot.POSES_DEG[pose], atol=1e-9)


def hip_heights_above_feet(model, data):
    hips = [data.xpos[model.body(f"{leg}_thigh").id] for leg in robot.LEGS]
    feet = [data.site(f"{leg}_foot").xpos for leg in robot.LEGS]
    return np.array([h[2] - f[2] for h, f in zip(hips, feet)])


def test_stand_keyframe_holds_ten_seconds_at_vendor_height(model):
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    for _ in range(int(round(10.0 / model.opt.timestep))):
        mujoco.mj_step(model, data)
    heights = hip_heights_above_feet(model, data)
    expected = [robot.STAND_FOOT_YZ_MM["front"][1] / 1000] * 2 + [robot.STAND_FOOT_YZ_MM["hind"][1] / 1000] * 2
    np.testing.assert_allclose(heights, expected, atol=0.010)
    assert data.xmat[model.body("torso").id][8] > np.cos(np.deg2rad(5))   # still level
    assert data.sensor("torso_touch").data[0] == 0                            # not lying down
    assert np.all(data.sensor("LF_foot_touch").data > 0)


def test_ik_of_vendor_stand_feet_gives_vendor_stand_angles():
    for (y, z), idx in ((robot.STAND_FOOT_YZ_MM["front"], 0), (robot.STAND_FOOT_YZ_MM["hind"], 4)):
        hip, knee = leg_ik(y / 1000, z / 1000)
        vendor = robot.POSES_DEG["stand"][idx:idx + 2]
        assert np.rad2deg([hip, knee]) == pytest.approx(vendor, abs=0.1)


def test_model_forward_kinematics_puts_feet_at_vendor_positions(model):
    data = mujoco.MjData(model)
    data.qpos[3] = 1.0
    data.qpos[7:15] = robot.pose_rad("stand")
    mujoco.mj_kinematics(model, data)
    for leg in robot.LEGS:
        rel = data.site(f"{leg}_foot").xpos - data.xpos[model.body(f"{leg}_thigh").id]
        y_mm, z_mm = robot.STAND_FOOT_YZ_MM["front" if leg.endswith("F") else "hind"]
        # vendor y is rearward (-x), z is the hip height above the foot (-z); legs have no sideways offset
        np.testing.assert_allclose([-rel[0], rel[1], -rel[2]], [y_mm / 1000, 0.0, z_mm / 1000], atol=0.002)


def test_analytic_fk_inverts_ik():
    y, z = np.meshgrid(np.linspace(-0.04, 0.04, 9), np.linspace(0.07, 0.105, 8))
    np.testing.assert_allclose(leg_fk(*leg_ik(y, z)), (y, z), atol=1e-9)


def test_servo_degree_mapping_round_trips_and_flips_the_right_side():
    rng = np.random.default_rng(0)
    deg = rng.uniform(-90, 90, (100, 8))
    np.testing.assert_allclose(robot.model_rad_to_servo_deg(robot.servo_deg_to_model_rad(deg)), deg, atol=1e-12)
    q = robot.servo_deg_to_model_rad(np.full(8, 30.0))
    assert np.all(q[[0, 1, 4, 5]] > 0) and np.all(q[[2, 3, 6, 7]] < 0)    # left +servo, right -servo
    # The vendor stand is mirror-symmetric in servo degrees, so it is identical left/right in the model.
    stand = robot.pose_rad("stand")
    np.testing.assert_allclose(stand[[0, 1, 4, 5]], stand[[2, 3, 6, 7]])
    a = rng.uniform(-1, 1, 8)
    np.testing.assert_allclose(robot.leg_rad_to_action(robot.action_to_leg_rad(a)), a)


def test_positive_hip_swings_the_foot_rearward(model):
    data = mujoco.MjData(model)
    data.qpos[3] = 1.0
    mujoco.mj_kinematics(model, data)
    x0 = data.site("LF_foot").xpos[0]
    data.qpos[7] = np.deg2rad(20)                 # LF hip, servo +20 (left side: q = +servo)
    mujoco.mj_kinematics(model, data)
    assert data.site("LF_foot").xpos[0] < x0


def test_self_collision_sensors_count_the_leg_pairs_contacts(model):
    """The two contact sensors equal a scan of the contact list for the leg-to-leg pairs, step by step."""
    from pidog_env.model import ModelIndex, leg_pairs, self_collisions
    idx = ModelIndex.of(model)
    pair_ids = {frozenset((model.geom(a).id, model.geom(b).id)) for a, b in leg_pairs()}
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    rng = np.random.default_rng(0)
    lo, hi = model.actuator_ctrlrange.T
    seen = 0
    for t in range(3000):
        if t % 50 == 0:
            data.ctrl[:] = rng.uniform(lo, hi)
        mujoco.mj_step(model, data)
        scanned = sum(frozenset(g.tolist()) in pair_ids for g in data.contact.geom)
        assert self_collisions(data, idx) == scanned
        seen += scanned
    assert seen > 100                        # the random poses do make the legs collide
