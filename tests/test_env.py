"""PiDog-v2 against the gymnasium contract and its own documented behaviour."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import pidog_env  # noqa: F401
from pidog_env import actuator, robot
from pidog_env.config import EnvConfig
from pidog_env.env import STAND_ACTION, PiDogEnv
from pidog_env.evaluation import run_episode
from pidog_env.gaits import TrotGait

REWARD_TERMS = {"forward", "alive", "upright", "lateral", "yaw_rate", "action_rate", "energy", "self_collision", "fall",
                "track_vx", "track_wz", "stand_still", "body_height", "torque_limit", "action_accel"}


@pytest.mark.parametrize("kwargs", [{}, {"randomize": False}, {"ultrasonic": True, "history": 3},
                                    {"use_camera": True}])
def test_gymnasium_and_sb3_checkers_pass(kwargs):
    env = gym.make("PiDog-v2", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # any checker warning fails the test
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
    env.close()


def test_checker_with_render_modes_passes_headless():
    env = gym.make("PiDog-v2", render_mode="rgb_array", render_size=(96, 128))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)        # 'human' mode without a display warns once
        gym_check_env(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 128, 3) and frame.std() > 5   # a real picture, not a blank buffer
    env.close()


def test_default_observation_is_what_the_robot_measures():
    env = gym.make("PiDog-v2", randomize=False)
    obs, _ = env.reset(seed=0)
    layout = env.unwrapped.obs_layout
    assert obs.shape == (16,) and list(layout) == ["gravity", "gyro", "last_action", "clock"]
    np.testing.assert_allclose(obs[layout["gravity"]], [0, 0, -1], atol=0.05)     # level at rest
    np.testing.assert_allclose(obs[layout["last_action"]], STAND_ACTION, atol=1e-6)
    np.testing.assert_allclose(obs[layout["clock"]], [0.0, 1.0], atol=1e-6)        # phase 0
    assert np.abs(obs).max() <= 1.0 + 1e-6


def test_camera_observation_is_a_dict_with_a_real_image():
    env = gym.make("PiDog-v2", use_camera=True, randomize=False)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"image", "state"} and obs["image"].dtype == np.uint8
    assert obs["image"].shape == (3, 48, 48) and obs["image"].std() > 3           # channels first
    env.close()


def rollout(seed, steps=150, **kwargs):
    env = gym.make("PiDog-v2", **kwargs)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    trajectory = [obs]
    for _ in range(steps):
        obs, reward, term, trunc, _ = env.step(rng.uniform(-0.3, 0.3, 8).astype(np.float32) + STAND_ACTION)
        trajectory.append(np.append(obs, reward))
        if term or trunc:
            break
    return trajectory


def test_same_seed_gives_the_same_trajectory_and_another_seed_does_not():
    a, b, c = rollout(7), rollout(7), rollout(8)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_randomization_changes_the_physics_per_episode_and_can_be_turned_off():
    env = PiDogEnv()
    masses = []
    for seed in (1, 2):
        env.reset(seed=seed)
        masses.append(env.model.body_mass.copy())
    assert not np.allclose(masses[0], masses[1])
    off = PiDogEnv(EnvConfig(), randomize=False)
    off.reset(seed=1)
    m1 = off.model.body_mass.copy()
    off.reset(seed=2)
    np.testing.assert_array_equal(m1, off.model.body_mass)


@pytest.mark.parametrize("bad", [np.full(8, np.nan), np.array([0, 0, 0, np.inf, 0, 0, 0, 0.0]), np.zeros(7), np.zeros((2, 8))])
def test_invalid_actions_raise_a_clear_error(bad):
    env = gym.make("PiDog-v2")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="PiDog-v2 action"):
        env.unwrapped.step(bad)


def test_physics_blow_up_ends_the_episode_with_a_flag_and_finite_observation():
    env = gym.make("PiDog-v2", randomize=False)
    env.reset(seed=0)
    env.unwrapped.data.qvel[:] = 1e12
    obs, reward, terminated, truncated, info = env.step(STAND_ACTION.astype(np.float32))
    assert terminated and info["physics_unstable"]
    assert np.isfinite(obs).all() and np.isfinite(reward)


def test_reward_is_the_sum_of_named_terms_reported_in_info():
    env = gym.make("PiDog-v2")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert set(info["reward_terms"]) == REWARD_TERMS
    assert reward == pytest.approx(sum(info["reward_terms"].values()))
    for key in ("forward_distance", "forward_speed", "lateral_drift", "heading_change_deg"):
        assert np.isfinite(info[key])


def test_body_height_term_counts_only_the_torso_below_its_minimum():
    from pidog_env import config_tree
    heights = {}
    for minimum in (0.05, 0.15):          # far below and far above the stand pose's torso (0.099 m)
        cfg = config_tree.apply(EnvConfig(), "reward.scales.body_height", -2.0)
        env = gym.make("PiDog-v2", config=config_tree.apply(cfg, "reward.min_body_height", minimum), randomize=False)
        env.reset(seed=0)
        _, _, _, _, info = env.step(STAND_ACTION.astype(np.float32))
        heights[minimum] = (info["reward_terms"]["body_height"], float(env.unwrapped.data.qpos[2]))
    assert heights[0.05][0] == 0.0
    value, z = heights[0.15]
    assert 0.08 < z < 0.11 and value == pytest.approx(-2.0 * (100 * (0.15 - z)) ** 2)


def test_torque_limit_term_counts_only_torque_above_its_soft_limit():
    from pidog_env import config_tree
    cfg = config_tree.apply(EnvConfig(), "reward.scales.torque_limit", -1.5)
    values = {}
    for soft in (1.0, 0.05):              # no servo exceeds its rated torque standing; most exceed 5 % of it
        env = gym.make("PiDog-v2", config=config_tree.apply(cfg, "reward.torque_soft_limit", soft), randomize=False)
        env.reset(seed=0)
        for _ in range(25):               # settle on the floor: the legs then carry the body
            _, _, _, _, info = env.step(STAND_ACTION.astype(np.float32))
        u = env.unwrapped
        torque = u.data.actuator_force[u.idx.leg_act] + u.data.qfrc_damper[u.idx.leg_qvel]   # drive less back-EMF
        forces = np.abs(torque) / u.cfg.physical.servo_torque
        values[soft] = (info["reward_terms"]["torque_limit"], forces)
    assert values[1.0][0] == 0.0
    value, forces = values[0.05]
    assert (forces > 0.05).sum() >= 4 and value == pytest.approx(-1.5 * np.clip(forces - 0.05, 0, None).sum())


def test_episode_is_truncated_after_20_seconds():
    env = gym.make("PiDog-v2", randomize=False)
    env.reset(seed=0)
    gait = TrotGait.for_env(env)
    obs, n = env.reset(seed=0)[0], 0
    while True:
        obs, _, term, trunc, _ = env.step(gait(obs))
        n += 1
        if term or trunc:
            break
    assert (n, trunc, term) == (1000, True, False)


def test_falling_terminates_with_the_fall_penalty():
    env = gym.make("PiDog-v2", randomize=False)
    env.reset(seed=0)
    base = env.unwrapped
    lean = -np.ones(8, dtype=np.float32)                 # every joint 45 deg below stand: it kneels ...
    lean[[0, 1, 4, 5]] = 1.0                             # ... on the right only, so it tips onto its side
    for _ in range(200):
        _, _, term, _, info = env.step(lean)
        if term:
            break
    assert term and info["fell"] and info["reward_terms"]["fall"] == pytest.approx(-50.0)
    tilted = base.data.xmat[base.idx.torso_body][8] < np.cos(np.deg2rad(60))
    assert tilted or base.data.sensordata[base.idx.torso_touch] > 0
    assert info["fall_cause"] == ("tilt" if tilted else "torso_touch")
    env.reset(seed=0)                                    # kneeling (knees on the floor, torso up) is not a fall
    for _ in range(100):
        _, _, term, _, info = env.step(-np.ones(8, dtype=np.float32))
    assert not term and base.data.qpos[2] > 0.04 and info["fall_cause"] == ""
    assert info["torso_height"] == base.data.qpos[2]


def test_standing_still_earns_clearly_less_than_trotting():
    env = gym.make("PiDog-v2", randomize=False)
    stand = run_episode(lambda obs: STAND_ACTION.astype(np.float32), env, seed=0)
    trot = run_episode(TrotGait.for_env(env), env, seed=0)
    assert not stand["fell"] and not trot["fell"]
    assert trot["return"] > 1.5 * stand["return"] and trot["return"] - stand["return"] > 200


def test_an_action_of_zero_holds_the_stand_pose():
    env = gym.make("PiDog-v2", randomize=False)
    env.reset(seed=0)
    base = env.unwrapped
    for _ in range(250):                                       # 5 s
        _, _, term, _, _ = env.step(np.zeros(8, np.float32))
        assert not term
    q = base.data.qpos[base.idx.leg_qpos]
    # the servos get the stand pose as the vendor PWM encodes it: whole counts, at most 0.44 deg below
    ctrl = base.data.ctrl[base.idx.leg_act]
    np.testing.assert_array_equal(ctrl, actuator.quantize(robot.STAND_Q))
    assert np.abs(np.rad2deg(ctrl - robot.STAND_Q)).max() < 0.44
    assert np.abs(np.rad2deg(q - robot.STAND_Q)).max() < 6.0    # servos hold it against the load
    assert base.data.xmat[base.idx.torso_body][8] > np.cos(np.deg2rad(5))
    env.close()


def test_action_scale_reaches_the_whole_trot_and_stays_in_the_safe_envelope():
    from pidog_env.gaits import TrotParams, trot_joint_targets
    q = np.array([trot_joint_targets(p, TrotParams()) for p in np.linspace(0, 1, 401)])
    a = robot.leg_rad_to_action(q)
    assert np.abs(a).max() < 0.9                                 # the trot never needs the clip
    np.testing.assert_allclose(robot.action_to_leg_rad(a), q, atol=1e-12)
    extremes = robot.action_to_leg_rad(np.array([[-1.0] * 8, [1.0] * 8]))
    assert np.all(extremes >= robot.LEG_Q_MIN - 1e-12) and np.all(extremes <= robot.LEG_Q_MAX + 1e-12)
    assert q.min() >= robot.LEG_Q_MIN.min() and np.all(q >= robot.LEG_Q_MIN) and np.all(q <= robot.LEG_Q_MAX)


def test_the_v1_id_is_refused_naming_v2():
    with pytest.raises(gym.error.DeprecatedEnv) as exc:
        gym.make("PiDog-v1")
    assert "PiDog-v2" in str(exc.value) and "\n" not in str(exc.value)


def test_each_episode_draws_a_supply_a_per_servo_spread_and_a_dead_time():
    """Randomized: one supply factor for all servos, each servo within +-10 % of the prior around it, the
    dead time within a physics step of its value; without randomization exactly the priors."""
    from pidog_env.actuator import ServoParams
    servo = ServoParams.from_physical(robot.PhysicalParams())
    env, dr = PiDogEnv(), EnvConfig().randomization
    supplies, deads = [], set()
    for seed in range(6):
        env.reset(seed=seed)
        s = env._episode.supply
        limit = env.model.actuator_forcerange[:, 1] / (s * servo.motor_torque())
        damping = env.model.dof_damping[6:] / servo.damping
        assert dr.supply[0] <= s <= dr.supply[1]
        assert np.all((limit > 0.9 - 1e-9) & (limit < 1.1 + 1e-9)) and np.ptp(limit) > 0.02
        assert np.all((damping > 0.9 / 1.1 - 1e-9) & (damping < 1.1 / 0.9 + 1e-9))
        supplies.append(s)
        deads.add(env._episode.dead_substeps)
    assert np.ptp(supplies) > 0.02 and deads <= {2, 3, 4} and len(deads) >= 2
    off = PiDogEnv(EnvConfig(), randomize=False)
    off.reset(seed=3)
    np.testing.assert_allclose(off.model.actuator_forcerange[:, 1], servo.motor_torque())
    np.testing.assert_allclose(off.model.dof_damping[6:], servo.damping)
    assert off._episode.supply == 1.0 and off._episode.dead_substeps == 3
