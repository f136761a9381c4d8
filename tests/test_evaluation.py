"""Evaluation: the batched (lockstep) evaluator gives each seeded episode exactly what the one-by-one loop
gives, in seed order, whatever the number of envs."""

import numpy as np
import pytest

from pidog_env.config import EnvConfig
from pidog_env.evaluation import run_episode, run_episodes_batched
from training.common import make_env, with_randomization
from training.evaluation import evaluate_policy


class RowwisePolicy:
    """A deterministic policy with SB3's `predict` that acts on each row alone (so batching cannot change
    its actions): a fixed random linear map, squashed."""

    def __init__(self, obs_size: int, seed: int = 3) -> None:
        self.w = np.random.default_rng(seed).normal(0, 0.15, (obs_size, 8))

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.tanh(obs @ self.w)

    def predict(self, obs, deterministic=True):
        assert deterministic
        obs = np.asarray(obs)
        return (np.stack([self.act(o) for o in obs]) if obs.ndim == 2 else self.act(obs)), None


def short_cfg() -> EnvConfig:
    from pidog_env import config_tree
    return with_randomization(config_tree.apply(EnvConfig(), "episode_seconds", 1.5), True)


def test_batched_episodes_equal_one_by_one_in_seed_order():
    cfg = short_cfg()
    policy = RowwisePolicy(make_env(cfg).observation_space.shape[0])
    seeds = [100 + i for i in range(5)]
    env = make_env(cfg)
    one_by_one = [run_episode(policy.act, env, s) for s in seeds]
    env.close()
    for n_envs in (1, 2, 5):                      # fewer envs than episodes: envs take the next seed
        envs = [make_env(cfg) for _ in range(n_envs)]
        batched = run_episodes_batched(lambda obs: policy.predict(obs)[0], envs, seeds)
        for env in envs:
            env.close()
        assert [e["return"] for e in batched] == [e["return"] for e in one_by_one]
        assert [e["length"] for e in batched] == [e["length"] for e in one_by_one]
        assert [e["reward_terms"] for e in batched] == [e["reward_terms"] for e in one_by_one]
        assert [(e["fell"], e["forward_distance"]) for e in batched] == [(e["fell"], e["forward_distance"])
                                                                         for e in one_by_one]
    assert len({round(e["return"], 6) for e in one_by_one}) == len(seeds)     # the seeds differ


@pytest.mark.parametrize("batch", [1, 4])
def test_evaluate_policy_reports_every_episode(batch):
    cfg = short_cfg()
    ev = evaluate_policy(RowwisePolicy(make_env(cfg).observation_space.shape[0]), cfg, 6, batch=batch)
    assert ev["episodes"] == 6 and len(ev["per_episode"]) == 6
    assert ev["mean_return"] == pytest.approx(np.mean([e["return"] for e in ev["per_episode"]]))
