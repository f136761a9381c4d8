"""The hard-coded trot walks: speed, straightness and robustness to domain randomization."""

import numpy as np
import pytest

from pidog_env.evaluation import run_trot_episode
from pidog_env.gaits import TrotGait, TrotParams, foot_targets


def test_trot_walks_straight_without_randomization():
    ep = run_trot_episode(seed=0, randomize=False)
    assert not ep["fell"] and ep["length"] == 1000
    assert ep["mean_forward_speed"] >= 0.12
    assert abs(ep["lateral_drift"]) < 0.15 * ep["forward_distance"]
    assert abs(ep["heading_change_deg"]) < 15


@pytest.mark.slow
def test_trot_survives_domain_randomization():
    falls = [run_trot_episode(seed=s, randomize=True)["fell"] for s in range(10)]
    assert sum(falls) <= 1, f"fell in {sum(falls)} of 10 randomized episodes"


def test_trot_pairs_diagonal_legs_half_a_cycle_apart():
    p = TrotParams()
    phases = np.linspace(0, 1, 200, endpoint=False)
    _, _, stance = foot_targets(phases, p)
    lf, rf, lh, rh = stance.T
    np.testing.assert_array_equal(lf, rh)                # LF+RH together
    np.testing.assert_array_equal(rf, lh)                # RF+LH together
    shifted = np.roll(lf, -100)                          # half a cycle later
    np.testing.assert_array_equal(shifted, rf)


def test_gait_reads_the_phase_from_the_observation_clock():
    gait = TrotGait(clock=slice(0, 2))
    for phase in (0.1, 0.6):
        obs = np.array([np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)])
        assert gait.phase_from_obs(obs) == pytest.approx(phase)
    batch = np.stack([[np.sin(a), np.cos(a)] for a in (0.3, 2.0)])
    assert gait(np.pad(batch, ((0, 0), (0, 6)))).shape == (2, 8)
