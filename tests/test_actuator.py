"""The servo model (pidog_env.actuator): a DC motor behind a P loop, its dead time and its PWM quantization."""

import mujoco
import numpy as np
import pytest

from pidog_env import actuator, robot
from pidog_env.actuator import ServoDrive, ServoParams

PARAMS = ServoParams(stall_torque=0.19, no_load_speed=9.6, kp=3.0, frictionloss=0.015, armature=8e-5,
                     dead_time=0.012)

# One servo turning a small disc in zero gravity: no load but its own inertia (and what a test applies).
ONE_SERVO = """
<mujoco>
  <compiler angle="radian"/>
  <option timestep="0.001" gravity="0 0 0"/>
  <worldbody>
    <body name="arm">
      <joint name="LF_knee" type="hinge" axis="0 1 0" range="-3 3"/>
      <geom type="cylinder" size="0.02 0.002" euler="90 0 0" mass="0.01"/>
    </body>
  </worldbody>
  <actuator><position name="LF_knee" joint="LF_knee" ctrlrange="-3 3"/></actuator>
</mujoco>
"""


def one_servo(params=PARAMS, supply=1.0):
    model = mujoco.MjModel.from_xml_string(ONE_SERVO)
    actuator.apply(model, params, supply)
    return model, mujoco.MjData(model)


def test_apply_writes_a_p_loop_with_the_back_emf_outside_the_force_clip():
    model, _ = one_servo(supply=0.9)
    assert model.actuator_gainprm[0, 0] == pytest.approx(0.9 * 3.0)
    np.testing.assert_allclose(model.actuator_biasprm[0, :3], [0.0, -0.9 * 3.0, 0.0])       # kv 0
    np.testing.assert_allclose(model.actuator_forcerange[0], [-0.9 * 0.205, 0.9 * 0.205])
    assert model.dof_damping[0] == pytest.approx(0.19 / 9.6)                                # b = tau_s / w0
    assert model.dof_frictionloss[0] == 0.015 and model.dof_armature[0] == 8e-5
    with pytest.raises(ValueError, match="no_load_speed"):
        ServoParams(0.19, 0.0, 3.0, 0.015, 8e-5, 0.012)


def test_a_joint_driven_at_a_far_target_never_exceeds_the_dc_line():
    """Every physics step of a full-speed slew and a reversal: the motor's torque in the direction of
    motion stays under the DC line s*tau - b*w, and the slew settles at the no-load speed."""
    model, data = one_servo()
    b, limit = PARAMS.damping, PARAMS.motor_torque()
    speeds, worst = [], -np.inf
    for target, steps in ((2.5, 500), (-2.5, 600)):
        data.ctrl[0] = target
        for _ in range(steps):
            mujoco.mj_step(model, data)
            w = data.qvel[0]
            torque = data.actuator_force[0] - b * w                    # the motor's torque on the joint
            if torque * w > 0:
                worst = max(worst, abs(torque) - (limit - b * abs(w)))
            speeds.append(abs(w))
    assert worst <= 1e-9
    assert max(speeds) == pytest.approx(PARAMS.no_load_speed, rel=0.01)     # the output's no-load speed


def test_the_torque_speed_line_under_load_is_the_datasheet_line():
    """Steady speeds against constant loads lie on tau_s - b w: the line's ends are the stall torque and
    the no-load speed (the output's figures, friction loss included)."""
    loads, speeds = np.array([0.0, 0.25, 0.5, 0.75]) * PARAMS.stall_torque, []
    for load in loads:
        model, data = one_servo()
        data.ctrl[0] = 2.5
        data.qfrc_applied[0] = -load
        for _ in range(150):
            mujoco.mj_step(model, data)
        speeds.append(data.qvel[0])
    slope, intercept = np.polyfit(loads, speeds, 1)
    assert intercept == pytest.approx(PARAMS.no_load_speed, rel=0.01)
    assert -intercept / slope == pytest.approx(PARAMS.stall_torque, rel=0.01)


def test_a_command_reaches_the_actuator_after_the_dead_time():
    model, data = one_servo()
    frame_skip = 5
    for dead in (3, 0, 7):                              # shorter than a control step, none, longer
        drive = ServoDrive(data.ctrl[0:1], dead)
        drive.reset(np.zeros(1))
        used = []                                       # the target each physics step ran with
        for k in range(4):                              # four control steps, a new target each
            drive.command(np.array([k + 1.0]))
            for _ in range(frame_skip):
                used.append(float(data.ctrl[0]))
                drive.advance(model, data, 1)
        assert [used.index(k + 1.0) for k in range(3)] == [dead, frame_skip + dead, 2 * frame_skip + dead]
        whole = ServoDrive(data.ctrl[0:1], dead)         # advancing a control step at once: the same
        whole.reset(np.zeros(1))
        whole.command(np.ones(1))
        whole.advance(model, data, frame_skip)
        assert data.ctrl[0] == (1.0 if dead <= frame_skip else 0.0)


def test_quantization_is_whole_pwm_counts_rounded_down_in_servo_degrees():
    q = robot.STAND_Q
    out = actuator.quantize(q)
    err = robot.model_rad_to_servo_deg(q) - robot.model_rad_to_servo_deg(out)
    assert np.all(err >= 0) and np.all(err < 180 / 2000 * 20000 / 4095)       # one count: 0.44 deg
    assert robot.model_rad_to_servo_deg(out)[0] == pytest.approx(40.385, abs=1e-3)   # 40.61 deg -> count 399
    np.testing.assert_array_equal(actuator.quantize(out), out)                 # a count maps to itself
    sweep = np.deg2rad(np.linspace(-80, 80, 2001))
    steps = np.unique(np.round(np.diff(np.unique(actuator.quantize(sweep, np.ones(2001)))), 12))
    assert np.rad2deg(steps) == pytest.approx([0.4396], abs=1e-4)


def test_supply_sags_when_the_servos_draw_more_than_the_rail_gives():
    model, data = one_servo()
    factors = {}
    for limit in (10.0, 0.35):                         # the stalled servo draws 0.7 A at full torque
        model, data = one_servo()
        sag = actuator.SupplySag(PARAMS, stall_current=0.7, current_limit=limit)
        drive = ServoDrive(data.ctrl[0:1], 0, sag=sag)
        drive.reset(np.zeros(1))
        data.qfrc_applied[0] = -2 * PARAMS.stall_torque            # held stalled
        drive.command(np.array([2.5]))
        drive.advance(model, data, 50)
        factors[limit] = sag.factor
    assert factors[10.0] == 1.0 and factors[0.35] == pytest.approx(0.5, abs=0.05)
