"""The runtime's safety layer against the model and the env: the leg-clearance guard (the model's leg geometry,
MuJoCo's contacts, the nearest safe pose, counted and logged), the env's order (rate limit, then clip), and
the runtime's observation equal to the env's over a whole episode in which the policy saturates the envelope."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from deploy import runtime
from deploy.hardware import MujocoHardware
from deploy.runtime import ActionMapper, ControlLoop, Stop
from deploy import safety
from deploy.safety import SafetyLayer
from pidog_env import robot
from pidog_env.config import EnvConfig
from test_deploy import STAND_DEG, spec_stub

SIDES = ((0, 1, 4, 5), (2, 3, 6, 7))
FOLD = np.array([0.5, 1.0, 0.5, 1.0, -1.0, 0.0, -1.0, 0.0])      # front feet back, hind feet forward: they meet


@pytest.fixture(scope="module")
def model():
    from pidog_env.model import load_model
    return load_model()


def test_the_guards_leg_geometry_is_the_models(model):
    for leg in robot.LEGS:
        assert model.geom(f"{leg}_thigh").size[0] == safety.THIGH_RADIUS and model.geom(f"{leg}_shin").size[0] == safety.SHIN_RADIUS
        assert model.geom(f"{leg}_foot").size[0] == safety.FOOT_RADIUS
        assert model.body(f"{leg}_shin").pos[2] == pytest.approx(-robot.THIGH_LENGTH)
        assert model.geom(f"{leg}_foot").pos[0] == pytest.approx(robot.SHIN_LENGTH)
        assert abs(model.body(f"{leg}_thigh").pos[0]) == pytest.approx(robot.HIP_SPACING_X / 2)


def test_the_clearance_finds_exactly_the_poses_in_which_mujoco_collides_a_front_and_a_hind_leg(model):
    from pidog_env.model import leg_pairs
    data = mujoco.MjData(model)
    pairs = {frozenset((model.geom(a).id, model.geom(b).id)) for a, b in leg_pairs()}
    addr = [model.joint(n).qposadr[0] for n in robot.LEG_JOINTS]
    q = np.random.default_rng(0).uniform(robot.LEG_Q_MIN, robot.LEG_Q_MAX, (3000, 8))
    data.qpos[2] = 1.0                                                  # in the air: only the legs can touch
    touching = np.zeros((len(q), 2), bool)
    for i, pose in enumerate(q):
        data.qpos[addr] = pose
        mujoco.mj_forward(model, data)
        for k in range(data.ncon):
            c = data.contact[k]
            if frozenset((c.geom1, c.geom2)) in pairs and c.dist < 0:
                touching[i, int(model.geom(c.geom1).name[0] != "L")] = True
    ours = np.array([[safety.side_clearance(*pose[list(side)]) for side in SIDES] for pose in q])
    np.testing.assert_array_equal(ours < 0, touching)
    assert 0.07 < touching.mean() < 0.13                                # about 10 % of the envelope, per side
    for pose in ("lie", "stand", "sit"):                                # the runtime's own poses keep the margin
        assert safety.LegClearance(robot.LEG_SIGNS, robot.LEG_SERVO_LIMITS_DEG).clear(robot.POSES_DEG[pose])


def test_the_nearest_safe_pose_is_on_the_margin_and_straight_out_of_the_collision():
    guard = safety.LegClearance(robot.LEG_SIGNS, robot.LEG_SERVO_LIMITS_DEG)
    rng = np.random.default_rng(1)
    gap = safety.side_clearance
    targets = [p for p in rng.uniform(robot.LEG_Q_MIN, robot.LEG_Q_MAX, (1500, 8))
               if gap(*p[:2], *p[4:6]) < safety.CLEARANCE_MARGIN and gap(*p[2:4], *p[6:]) > 0.02]
    found = 0
    for q in targets:
        deg = robot.model_rad_to_servo_deg(q)
        out = guard.nearest_safe(deg)
        if out is None:                           # legs deep in each other: the layer keeps to a safe pose on the way
            layer = SafetyLayer(robot.LEG_SERVO_LIMITS_DEG, 1e6, 0.02, STAND_DEG, 60.0, clearance=guard)
            assert guard.clear(layer.filter(deg)) and layer.interventions == 1
            continue
        found += 1
        assert guard.clear(out) and np.all(out >= guard.lower - 1e-9) and np.all(out <= guard.upper + 1e-9)
        np.testing.assert_array_equal(out[[2, 3, 6, 7]], deg[[2, 3, 6, 7]])    # the other side is left alone
        p = robot.servo_deg_to_model_rad(out)[[0, 1, 4, 5]]
        assert safety.CLEARANCE_MARGIN <= gap(*p) < safety.CLEARANCE_MARGIN + 5e-4   # on the margin, not beyond
        grad = np.array([(safety.side_clearance(*(p + h)) - safety.side_clearance(*(p - h))) / 2e-6 for h in np.eye(4) * 1e-6])
        move = p - q[[0, 1, 4, 5]]
        inside = (np.abs(out - guard.lower) > 1e-6) & (np.abs(out - guard.upper) > 1e-6)
        if inside[[0, 1, 4, 5]].all() and np.linalg.norm(move) < 0.05:   # a shallow one: the move is along the gradient
            assert move @ grad / (np.linalg.norm(move) * np.linalg.norm(grad)) > 0.98
    assert len(targets) > 100 and found / len(targets) > 0.9


class StillRobot:
    """Records the servo commands; a still, level IMU."""

    def __init__(self):
        self.written, self.rng = [], np.random.default_rng(0)

    def read_imu(self):
        return np.array([0.0, 0.0, 9.81]) + self.rng.normal(0, 0.01, 3), self.rng.normal(0, 0.001, 3)

    def write_legs(self, deg):
        self.written.append(np.asarray(deg, dtype=float).copy())
        return True

    def battery_voltage(self):
        return None

    def release(self):
        pass


def test_the_loop_moves_a_policy_that_folds_the_legs_together_to_the_nearest_safe_pose_counts_and_logs_it():
    hw, said = StillRobot(), []
    loop = ControlLoop(spec_stub(), lambda obs: FOLD.astype(np.float32), hw, realtime=False, log=True, say=said.append,
                       stand_s=0.2, lie_s=0.2, settle_s=0.02)
    assert loop.run(0.5) == Stop("done", "time limit reached")
    guard = safety.LegClearance(robot.LEG_SIGNS, robot.LEG_SERVO_LIMITS_DEG)
    assert all(min(guard.clearances(w)) >= safety.CLEARANCE_MARGIN - 1e-9 for w in hw.written)   # never closer, every write
    assert all(np.abs(np.diff(hw.written, axis=0)).max(axis=1) <= 428 * 0.02 + 1e-9)     # nor faster than 428 deg/s
    assert loop.safety.interventions >= sum(loop.log["guard"]) >= 15                     # counted; logged per tick
    assert sum("leg-clearance guard" in line for line in said) == 1
    target = robot.model_rad_to_servo_deg(robot.action_to_leg_rad(FOLD))
    assert min(guard.clearances(target)) < 0                             # what the policy asked for: legs through legs
    np.testing.assert_allclose(loop.log["command_deg"][-1], guard.nearest_safe(target), atol=1e-6)
    np.testing.assert_allclose(loop.log["obs"][-1][6:14], FOLD, atol=1e-6)   # the policy sees its command, as in the env


def test_the_safety_layer_rate_limits_then_clips_as_the_env_does():
    import gymnasium as gym

    import pidog_env  # noqa: F401
    from deploy.hardware import ENV_ID
    env = gym.make(ENV_ID, config=EnvConfig(), randomize=False)
    env.reset(seed=0)
    spec = spec_stub()
    mapper = ActionMapper(spec)
    safety = SafetyLayer(spec.leg_servo_limits_deg, spec.leg_speed_deg_s, spec.control_dt, STAND_DEG, 60.0)
    actions = [np.array([0.0, 0, 0, 0, 1.4, 0, 1.0, 0])] * 8 + [np.array([0.0, 0, 0, 0, 0.2, 0, 0.2, 0])] * 3
    for k, a in enumerate(actions):
        obs = env.step(a.astype(np.float32))[0]
        out = safety.filter(mapper.to_target_deg(a))
        np.testing.assert_allclose(mapper.to_action(safety.command), obs[6:14], atol=1e-6, err_msg=f"step {k}")
        np.testing.assert_allclose(out, robot.model_rad_to_servo_deg(robot.action_to_leg_rad(obs[6:14])), atol=1e-4)
    assert obs[10] == pytest.approx(1.0 - 3 * 428 * 0.02 / 45)           # coming back from 1.0, not from 0.66 (90 deg)
    env.close()


def test_the_bias_limits_are_what_training_randomizes():
    r = EnvConfig().randomization
    assert (runtime.ACCEL_BIAS_MAX, runtime.GYRO_BIAS_MAX) == (r.accel_bias, r.gyro_bias)


class RawActionSim(MujocoHardware):
    """The simulated robot stepped with the policy's own action, as training steps the env, while the runtime
    computes its observation and servo targets on its own from the IMU."""

    def __init__(self, policy, **kw):
        super().__init__(**kw)
        self.policy, self.written, self.truncated = policy, [], False

    def write_legs(self, servo_deg):
        self.written.append(np.asarray(servo_deg, dtype=float).copy())
        self.last_obs, _, term, self.truncated, self.info = self.env.step(self.policy.last)
        self.terminated = self.terminated or term
        return True


class Saturating:
    """The trot, with the hind hips pushed to the action's limit (past the envelope) for 8 of every 40 ticks
    and held back to -1 for another 4."""

    def __init__(self):
        from pidog_env.gaits import TrotGait
        self.gait, self.calls, self.last = TrotGait.for_config(EnvConfig()), 0, None

    def __call__(self, obs):
        a = np.array(self.gait(obs), dtype=np.float32)
        k = self.calls % 40
        if k < 8:
            a[[4, 6]] = 1.0
        elif 20 <= k < 24:
            a[[4, 6]] = -1.0
        self.calls += 1
        self.last = a
        return a


@pytest.mark.slow
def test_the_runtime_observes_as_the_env_over_a_whole_episode_that_saturates_the_envelope():
    policy = Saturating()
    hw = RawActionSim(policy, randomize=True, seed=0)                   # noise, bias, latency and all
    from training.export import spec_for
    spec = spec_for(EnvConfig(), "test")
    loop = ControlLoop(spec, policy, hw, realtime=False)
    loop.start()
    saturated = 0
    for _ in range(EnvConfig().episode_steps):
        env_obs = hw.last_obs                                           # what the env built for the next action
        assert loop.tick()
        np.testing.assert_allclose(loop.last_obs, env_obs, atol=1e-6)
        env_targets = robot.model_rad_to_servo_deg(robot.action_to_leg_rad(hw.last_obs[6:14]))
        np.testing.assert_allclose(hw.written[-1], env_targets, atol=1e-6)     # the servos get the env's targets
        saturated += abs(hw.last_obs[10]) > 0.67                        # the command past the envelope's 90 deg
        if hw.terminated or hw.truncated:
            break
    assert hw.truncated and not hw.terminated and saturated > 100 and loop.safety.interventions == 0
    hw.close()
