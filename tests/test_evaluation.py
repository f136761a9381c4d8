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


def test_evaluate_policy_reports_every_episode():
    cfg = short_cfg()
    ev = evaluate_policy(RowwisePolicy(make_env(cfg).observation_space.shape[0]), cfg, 6)
    assert ev["episodes"] == 6 and len(ev["per_episode"]) == 6
    assert ev["mean_return"] == pytest.approx(np.mean([e["return"] for e in ev["per_episode"]]))


def _network_policy():
    import torch

    from pidog_env.env import action_space, observation_space
    from training.config import PipelineConfig
    from training.policies import make_policy
    torch.manual_seed(0)
    cfg = PipelineConfig()
    return make_policy(observation_space(cfg.env), action_space(cfg.env), cfg.policy)


def test_a_rows_action_does_not_depend_on_the_rows_beside_it():
    """What makes an episode a function of the policy and its seed alone (checked on this machine's BLAS)."""
    from training.evaluation import EVAL_BATCH, batch_actions
    policy = _network_policy()
    act = batch_actions(policy)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(EVAL_BATCH + 5, policy.observation_space.shape[0])).astype(np.float32)
    whole = act(obs)
    assert whole.shape == (EVAL_BATCH + 5, 8)
    for k in (1, 2, 7, EVAL_BATCH):
        for start in (0, 3, 5):
            assert np.array_equal(act(obs[start:start + k]), whole[start:start + k]), (k, start)
    # (a plain SB3 predict on a different number of rows would not promise this)


def test_an_episode_is_the_same_in_any_evaluation_that_runs_its_seed():
    cfg = short_cfg()
    policy = _network_policy()
    whole = evaluate_policy(policy, cfg, 6, seed=500)["per_episode"]
    assert evaluate_policy(policy, cfg, 3, seed=502)["per_episode"] == whole[2:5]
    assert evaluate_policy(policy, cfg, 1, seed=505)["per_episode"] == whole[5:]
    from training.evaluation import policy_callable
    env = make_env(cfg)
    single = run_episode(policy_callable(policy), env, 501)                  # the viewer's / export's loop
    env.close()
    assert single["return"] == whole[1]["return"] and single["length"] == whole[1]["length"]


@pytest.mark.slow
def test_an_eval_pool_gives_the_episodes_of_one_process():
    from training.evaluation import PARALLEL_FROM, EvalPool
    cfg = short_cfg()
    policy = _network_policy()
    alone = evaluate_policy(policy, cfg, PARALLEL_FROM + 3, seed=700)
    with EvalPool(2) as pool:
        split = evaluate_policy(policy, cfg, PARALLEL_FROM + 3, seed=700, pool=pool)
        assert pool._procs and all(p.is_alive() for p in pool._procs)        # it did run in a worker
        again = evaluate_policy(policy, cfg, PARALLEL_FROM + 3, seed=700, pool=pool)   # kept envs, same figures
    assert split == alone == again
    assert not pool._procs


def test_a_pool_runs_an_episode_once_per_weights_and_env():
    from training.evaluation import EvalPool
    cfg = short_cfg()
    policy = _network_policy()
    twin = _network_policy()                                  # the same weights, another object
    with EvalPool(1) as pool:
        first = evaluate_policy(policy, cfg, 3, seed=900, pool=pool)["per_episode"]
        assert pool.reused == 0
        again = evaluate_policy(twin, cfg, 4, seed=900, pool=pool)["per_episode"]
        assert pool.reused == 3 and again[:3] == first
        import torch
        with torch.no_grad():
            twin.log_std.fill_(-1.0)                           # exploration only: the same deterministic actions
        evaluate_policy(twin, cfg, 1, seed=900, pool=pool)
        assert pool.reused == 4
        with torch.no_grad():
            twin.action_net.bias.add_(0.01)                    # other actions: run again
        evaluate_policy(twin, cfg, 1, seed=900, pool=pool)
        assert pool.reused == 4
        evaluate_policy(policy, with_randomization(cfg, False), 1, seed=900, pool=pool)   # another env
        assert pool.reused == 4
