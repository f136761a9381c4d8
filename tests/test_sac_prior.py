"""SAC from BC: the actor's decaying pull towards the BC policy and LayerNorm critics (training.sac_prior)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from training.policies import has_layer_norm, layer_norm_critics
from training.sac_prior import SACWithPrior

TARGET = 0.5       # the synthetic prior's action, whatever the state


def constant_prior(obs: torch.Tensor) -> torch.Tensor:
    return torch.full((len(obs), 1), TARGET)


def model(bc_coef: float) -> SACWithPrior:
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=bc_coef, bc_decay_steps=1_000,
                     release_step=0, learning_starts=200, learning_rate=1e-3, batch_size=64, seed=0, device="cpu",
                     policy_kwargs={"net_arch": [32, 32]})
    m.learn(200)                                  # fills the buffer with random actions, no update yet
    return m


def distance_to_prior(m: SACWithPrior) -> float:
    obs = torch.as_tensor(m.replay_buffer.observations[:200, 0])
    with torch.no_grad():
        return float(((m.actor(obs, deterministic=True) - TARGET) ** 2).mean())


@pytest.mark.slow
def test_the_prior_term_pulls_the_actor_to_the_bc_actions_and_the_sac_loss_alone_does_not():
    pulled, free = model(bc_coef=100.0), model(bc_coef=0.0)
    for m in (pulled, free):
        m.train(gradient_steps=150, batch_size=64)
    assert distance_to_prior(pulled) < 0.01
    assert distance_to_prior(free) > 10 * distance_to_prior(pulled)


def test_the_prior_weight_falls_linearly_to_zero_after_the_release():
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=2.0, bc_decay_steps=1_000,
                     release_step=500, device="cpu")
    for steps, coef in ((0, 2.0), (500, 2.0), (1_000, 1.0), (1_500, 0.0), (9_000, 0.0)):
        m.num_timesteps = steps
        assert m.current_bc_coef() == pytest.approx(coef)
    assert SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=None, bc_coef=2.0).current_bc_coef() == 0.0


def test_layer_norm_critics_keep_their_shape_and_start_equal_to_their_targets():
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), device="cpu", policy_kwargs={"net_arch": [32, 32]})
    assert not has_layer_norm(m.policy.state_dict())
    layer_norm_critics(m.policy)
    assert has_layer_norm(m.policy.state_dict())
    for q, q_target in zip(m.policy.critic.q_networks, m.policy.critic_target.q_networks):
        assert sum(isinstance(layer, torch.nn.LayerNorm) for layer in q) == 2
    obs, act = torch.randn(5, 3), torch.rand(5, 1) * 2 - 1
    for q, qt in zip(m.policy.critic(obs, act), m.policy.critic_target(obs, act)):
        assert q.shape == (5, 1)
        torch.testing.assert_close(q, qt)
    optimized = {id(p) for g in m.policy.critic.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in m.policy.critic.parameters()}       # the new layers are trained
    m.learn(100)                                                                 # and SB3 trains through them


@pytest.mark.parametrize("n_critics", [2, 3])
def test_a_sac_model_with_layer_norm_critics_reloads_from_its_weights(tmp_path, n_critics):
    from pidog_env.config import EnvConfig
    from training.common import make_env
    from training.config import PolicyConfig
    from training.policies import load_policy, policy_meta
    from training.experiment import Experiment
    env_cfg = EnvConfig()
    m = SACWithPrior("MlpPolicy", make_env(env_cfg), device="cpu",
                     policy_kwargs={"net_arch": [64, 64], "n_critics": n_critics})
    layer_norm_critics(m.policy)
    assert len(m.policy.critic.q_networks) == n_critics
    exp = Experiment.__new__(Experiment)
    path = Experiment.save_model(exp, m, tmp_path / "sac.zip",
                                 policy_meta(m.policy, PolicyConfig(net_arch=(64, 64)), env_cfg, stage="rl", algo="SAC"))
    policy, _ = load_policy(path)
    obs = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    np.testing.assert_allclose(policy.predict(obs, deterministic=True)[0], m.policy.predict(obs, deterministic=True)[0])


def test_from_bc_the_target_entropy_is_the_warm_started_actors_own():
    from training.off_policy import actor_entropy
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), device="cpu", policy_kwargs={"net_arch": [32, 32]})
    with torch.no_grad():                        # a zero-mean Gaussian with std exp(-2.5) before tanh
        m.actor.mu.weight.zero_(), m.actor.mu.bias.zero_()
        m.actor.log_std.weight.zero_(), m.actor.log_std.bias.fill_(-2.5)
    obs = np.random.default_rng(0).normal(size=(2_000, 3)).astype(np.float32)
    gaussian = 0.5 * np.log(2 * np.pi * np.e) - 2.5               # tanh changes it by ~E[u^2] = 0.007 here
    assert actor_entropy(m.actor, obs) == pytest.approx(gaussian, abs=0.05)
    assert actor_entropy(m.actor, obs) < -1.0                      # far below SB3's default target (-1 here)


def constrained(target_mse: float, release_step: int = 0) -> SACWithPrior:
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=2.0, bc_target_mse=target_mse,
                     release_step=release_step, learning_starts=200, learning_rate=1e-2, batch_size=64, seed=0,
                     device="cpu", policy_kwargs={"net_arch": [32, 32]})
    m.learn(200)                                  # fills the buffer, no update yet
    return m


