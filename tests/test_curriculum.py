"""Randomization levels (`pidog evaluate --randomization-level`) scale the ranges as documented."""

import dataclasses

import pytest

from pidog_env.config import RandomizationConfig
from pidog_env.curriculum import scaled


def test_level_one_is_the_configured_ranges():
    rand = RandomizationConfig()
    assert scaled(rand, 1.0) == rand


def test_level_zero_is_one_nominal_robot():
    rand = scaled(RandomizationConfig(), 0.0)
    assert rand.push_velocity == 0 and rand.calibration_deg == 0 and rand.accel_noise == 0 and rand.com_offset == 0
    assert rand.mass_scale == (1.0, 1.0) and rand.supply == pytest.approx((0.95, 0.95)) and rand.servo_spread == 0
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


