"""training/vec_env.py: the batched vector env equals DummyVecEnv step for step and keeps SB3's contract."""

import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor

from pidog_env.config import EnvConfig
from pidog_env import config_tree
from training.common import make_vec_env
from training.vec_env import BatchedSubprocVecEnv


def short_cfg(**settings):
    cfg = config_tree.apply(EnvConfig(), "episode_seconds", 1.0)         # 50 steps: many auto-resets
    for key, value in settings.items():
        cfg = config_tree.apply(cfg, key, value)
    return cfg


@pytest.mark.parametrize("n_envs", [3, 4])
@pytest.mark.slow
def test_batched_steps_equal_dummy_vec_env_with_auto_reset(n_envs):
    cfg = short_cfg()
    batched = make_vec_env(cfg, n_envs, seed=7, kind="batched")
    dummy = make_vec_env(cfg, n_envs, seed=7, subprocess=False)
    try:
        assert isinstance(batched, BatchedSubprocVecEnv) and len(batched.processes) == len(batched._blocks) - 1 >= 1
        assert np.array_equal(batched.reset(), dummy.reset())
        rng = np.random.default_rng(0)
        ends = 0
        for _ in range(120):
            actions = rng.uniform(-1, 1, (n_envs, 8)).astype(np.float32)
            (ob, rb, db, ib), (od, rd, dd, idd) = batched.step(actions), dummy.step(actions)
            assert np.array_equal(ob, od) and np.array_equal(rb, rd) and np.array_equal(db, dd)
            for a, b in zip(ib, idd):
                assert a.keys() == b.keys() and a["reward_terms"] == b["reward_terms"]
                assert a["TimeLimit.truncated"] == b["TimeLimit.truncated"]
                if "terminal_observation" in a:
                    ends += 1
                    assert np.array_equal(a["terminal_observation"], b["terminal_observation"])
                    assert a["episode"]["l"] == b["episode"]["l"]               # Monitor's episode record
        assert ends >= 2 * n_envs                                               # every env ended and restarted
        before = ob.copy()
        batched.step(np.zeros((n_envs, 8), np.float32))
        assert np.array_equal(ob, before)                   # returned observations are copies, not views
    finally:
        batched.close()
        dummy.close()


@pytest.mark.slow
def test_attribute_calls_reach_each_env_in_order_and_errors_come_back():
    venv = make_vec_env(short_cfg(), 4, seed=0, kind="batched")
    try:
        assert venv.env_is_wrapped(Monitor) == [True] * 4
        venv.set_attr("tag", "x", indices=[0, 3])
        assert venv.get_attr("tag", indices=[3, 0]) == ["x", "x"]
        assert venv.env_method("get_wrapper_attr", "tag", indices=[0]) == ["x"]
        assert [c is None for c in venv.get_attr("command")] == [True] * 4          # forward task
        with pytest.raises(AttributeError):
            venv.get_attr("tag", indices=[1])            # set on envs 0 and 3 only (env 1 is in a worker)
        assert venv.get_attr("tag", indices=[0]) == ["x"]                          # the worker survived
    finally:
        venv.close()


@pytest.mark.slow
def test_dict_observations_of_the_camera_policy_travel_through_shared_memory():
    cfg = short_cfg(use_camera=True, camera_size=16)
    batched = make_vec_env(cfg, 2, seed=1, kind="batched")
    dummy = make_vec_env(cfg, 2, seed=1, subprocess=False)
    try:
        ob, od = batched.reset(), dummy.reset()
        assert set(ob) == {"image", "state"} and ob["image"].dtype == np.uint8
        for _ in range(3):
            a = np.zeros((2, 8), np.float32)
            ob, od = batched.step(a)[0], dummy.step(a)[0]
        assert all(np.array_equal(ob[k], od[k]) for k in ob)
    finally:
        batched.close()
        dummy.close()
