"""The randomization curriculum: levels scale the ranges as documented, the level follows the evaluation
history, and the training envs receive it."""

import dataclasses
from types import SimpleNamespace

import pytest

from pidog_env.config import RandomizationConfig
from pidog_env.curriculum import level_after, next_level, scaled


def test_level_one_is_the_configured_ranges():
    rand = RandomizationConfig()
    assert scaled(rand, 1.0) == rand


def test_level_zero_is_one_nominal_robot():
    rand = scaled(RandomizationConfig(), 0.0)
    assert rand.push_velocity == 0 and rand.calibration_deg == 0 and rand.accel_noise == 0 and rand.com_offset == 0
    assert rand.mass_scale == (1.0, 1.0) and rand.torque_scale == (1.0, 1.0)
    assert rand.friction == pytest.approx((0.85, 0.85))
    assert rand.latency_steps == (1, 1) and rand.imu_delay_substeps == (1, 1)
    assert rand.push_interval_s == RandomizationConfig().push_interval_s and rand.enabled


def test_levels_above_one_widen_within_each_settings_bounds():
    base, wide = RandomizationConfig(), scaled(RandomizationConfig(), 1.5)
    assert wide.push_velocity == pytest.approx(1.5 * base.push_velocity)
    assert wide.friction[0] < base.friction[0] and wide.friction[1] > base.friction[1]
    assert wide.latency_steps == (0, 3)              # 1 -+ 1.5: rounded, never below 0
    huge = scaled(RandomizationConfig(), 3.0)
    assert huge.friction[0] > 0 and huge.mass_scale[0] > 0 and huge.calibration_deg <= 20
    for f in dataclasses.fields(huge):                # still a valid configuration
        value = getattr(huge, f.name)
        if isinstance(value, tuple):
            assert value[0] <= value[1]
    with pytest.raises(ValueError):
        scaled(base, -0.1)


def test_the_level_steps_up_after_safe_evaluations_only():
    assert next_level(0.5, 0.0, 0.05, 0.1, 1.5) == pytest.approx(0.6)
    assert next_level(0.5, 0.1, 0.05, 0.1, 1.5) == 0.5
    assert next_level(1.45, 0.0, 0.05, 0.1, 1.5) == 1.5
    assert level_after([0.0, 0.2, 0.0, 0.05], 0.5, 0.05, 0.1, 1.5) == pytest.approx(0.8)
    assert level_after([], 0.5, 0.05, 0.1, 1.5) == 0.5


def test_the_callback_sets_the_training_envs_randomization():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from pidog_env.config import EnvConfig
    from training.callbacks import CurriculumCallback
    from training.common import make_env

    venv = DummyVecEnv([lambda: make_env(EnvConfig()) for _ in range(2)])
    history: list[dict] = []
    cb = CurriculumCallback(RandomizationConfig(), lambda: history, start=0.5, step=0.25, top=1.0, max_fall_rate=0.05)

    class Logger:
        def record(self, *a):
            pass

    cb.model = SimpleNamespace(get_env=lambda: venv, logger=Logger())   # what SB3's init_callback would set
    cb._on_training_start()
    levels = [e.unwrapped.cfg.randomization.push_velocity for e in venv.envs]
    assert levels == [pytest.approx(0.075)] * 2 and cb.level == 0.5
    history += [{"fall_rate": 0.0}, {"fall_rate": 0.5}]
    cb._on_step()
    assert cb.level == 0.75
    assert venv.envs[1].unwrapped.cfg.randomization.push_velocity == pytest.approx(0.1125)
    history += [{"fall_rate": 0.0}, {"fall_rate": 0.0}]
    cb._on_step()
    assert cb.level == 1.0 and venv.envs[0].unwrapped.cfg.randomization == RandomizationConfig()
    venv.close()
