"""SAC from BC: the actor's decaying pull towards the BC policy and LayerNorm critics (training.sac_prior)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from training.sac_prior import SACWithPrior, has_layer_norm, layer_norm_critics

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
    m.bc_coef_final = 0.5                                     # a floor: the decay ends there and stays
    for steps, coef in ((500, 2.0), (1_000, 1.25), (1_500, 0.5), (9_000, 0.5)):
        m.num_timesteps = steps
        assert m.current_bc_coef() == pytest.approx(coef)


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


def test_the_centred_entropy_term_is_zero_at_the_target_entropy_and_shifts_every_step_by_the_same_amount():
    from training.sac_prior import entropy_term
    alpha, target = torch.tensor(0.15), -9.5
    log_prob = torch.tensor([[9.5], [12.0], [7.0]])             # near-deterministic actor: log pi > 0
    plain, centred = entropy_term(alpha, log_prob, target, False), entropy_term(alpha, log_prob, target, True)
    torch.testing.assert_close(plain, 0.15 * log_prob)         # SB3's: a per-step cost of ~1.4 here
    torch.testing.assert_close(centred, torch.tensor([[0.0], [0.375], [-0.375]]))
    torch.testing.assert_close(plain - centred, torch.full((3, 1), 0.15 * 9.5))


@pytest.mark.parametrize("centred", [False, True])
def test_the_critic_update_uses_the_configured_entropy_term(monkeypatch, centred):
    import training.sac_prior as sac_prior
    seen = []
    real = sac_prior.entropy_term
    monkeypatch.setattr(sac_prior, "entropy_term", lambda *a: seen.append(a[3]) or real(*a))
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, learning_starts=50,
                     batch_size=16, seed=0, device="cpu", center_entropy=centred, policy_kwargs={"net_arch": [16]})
    m.learn(52)
    assert seen and set(seen) == {centred}


def constrained(target_mse: float, release_step: int = 0) -> SACWithPrior:
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=2.0, bc_target_mse=target_mse,
                     release_step=release_step, learning_starts=200, learning_rate=1e-2, batch_size=64, seed=0,
                     device="cpu", policy_kwargs={"net_arch": [32, 32]})
    m.learn(200)                                  # fills the buffer, no update yet
    return m


def test_the_constrained_prior_weight_rises_while_the_actor_is_far_from_bc_and_falls_while_it_is_near():
    far, near = constrained(1e-9), constrained(1.0)           # the fresh actor is ~0.25 from the prior's 0.5
    d0 = distance_to_prior(far)
    assert 1e-3 < d0 < 1.0
    for m in (far, near):
        m.train(gradient_steps=100, batch_size=64)
    assert far.current_bc_coef() > 2.2                         # Adam: steps of <= lr (1e-2) in log per update
    assert near.current_bc_coef() < 1.8
    assert distance_to_prior(far) < d0                         # the raised weight pulls the actor in
    logged = far.logger.name_to_value
    assert logged["train/bc_coef"] > 2.0 and logged["train/bc_mse"] > 0


def test_the_constrained_prior_weight_holds_during_the_critic_warm_up_and_the_decay_does_not_apply():
    m = constrained(1.0, release_step=10_000)
    m.train(gradient_steps=50, batch_size=64)
    assert m.current_bc_coef() == pytest.approx(2.0)
    m.num_timesteps = 1_000_000                               # far past any decay: the tuned weight stays
    assert m.current_bc_coef() == pytest.approx(2.0)
    m.train(gradient_steps=50, batch_size=64)
    assert m.current_bc_coef() < 2.0


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_warm_up_noise_joins_the_stored_actions_only_while_the_actor_is_frozen(algo):
    from stable_baselines3 import TD3
    from stable_baselines3.common.noise import NormalActionNoise

    from training.off_policy import FreezeActor
    warmup, total = 300, 600
    if algo == "sac":
        m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=0, seed=0, device="cpu",
                         policy_kwargs={"net_arch": [16]})
        own = None
    else:
        own = NormalActionNoise(np.zeros(1), 0.01 * np.ones(1))
        m = TD3("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=0, seed=0, device="cpu", action_noise=own,
                policy_kwargs={"net_arch": [16]})
    with torch.no_grad():                      # a near-deterministic actor with action 0: what it stores is noise
        for p in m.actor.parameters():
            p.zero_()
        if algo == "sac":
            m.actor.log_std.bias.fill_(-10.0)
    freeze = FreezeActor(warmup, noise_std=0.3)
    m.learn(total, callback=freeze)
    stored = m.replay_buffer.actions[:total, 0, 0]
    during, after = stored[20:warmup], stored[warmup + 20:]
    assert 0.2 < during.std() < 0.4                               # the warm-up's noise, std 0.3
    assert not freeze.frozen and m.action_noise is own             # the algorithm's own noise is back
    assert np.abs(after).std() < 0.1                               # the actor's own actions (it moved a little)


@pytest.mark.parametrize("delay", [1, 3])
def test_the_actor_learns_on_every_delay_th_gradient_step_and_the_critics_on_all(delay):
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, actor_delay=delay,
                     learning_starts=100, seed=0, device="cpu", policy_kwargs={"net_arch": [16]})
    m.learn(100)
    steps = {"actor": 0, "critic": 0}
    for name in steps:
        optimizer = getattr(m, name).optimizer
        original = optimizer.step

        def counted(*args, _name=name, _original=original, **kwargs):
            steps[_name] += 1
            return _original(*args, **kwargs)
        optimizer.step = counted
    before = [p.detach().clone() for p in m.actor.parameters()]
    m.train(gradient_steps=4, batch_size=32)
    m.train(gradient_steps=5, batch_size=32)        # the count runs on across calls: steps 0, 3, 6 of 0-8
    assert steps == {"actor": len(range(0, 9, delay)), "critic": 9}
    assert any(not torch.equal(b, p) for b, p in zip(before, m.actor.parameters()))


def test_offline_critic_pretraining_fits_the_demonstrations_without_env_steps_or_moving_the_actor():
    from training.replay import DemoMixReplayBuffer
    rng = np.random.default_rng(0)
    n = 400
    obs = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    demos = {"obs": obs, "next_obs": np.roll(obs, -1, axis=0), "actions": rng.uniform(-1, 1, (n, 1)),
             "rewards": np.ones(n), "dones": np.zeros(n)}
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, seed=0, device="cpu",
                     replay_buffer_class=DemoMixReplayBuffer, replay_buffer_kwargs={"demo_ratio": 0.5, "gamma": 0.5},
                     policy_kwargs={"net_arch": [32, 32]}, gamma=0.5, ent_coef=0.0)
    m.replay_buffer.set_demos(demos)
    actor = [p.detach().clone() for p in m.actor.parameters()]
    first = m.pretrain_critics(1, batch_size=64)
    last = m.pretrain_critics(1_500, batch_size=64)
    assert last < first / 10
    with torch.no_grad():                  # every demo step earns 1, never ends: Q = 1 / (1 - 0.5) = 2
        q = torch.cat(m.critic(torch.as_tensor(obs), torch.as_tensor(demos["actions"], dtype=torch.float32)), 1)
    assert float(q.mean()) == pytest.approx(2.0, abs=0.3)
    assert m.num_timesteps == 0 and m.replay_buffer.pos == 0 and m.replay_buffer.drawn["online"] == 0
    assert all(torch.equal(a, p) for a, p in zip(actor, m.actor.parameters()))


def test_the_actor_loss_normalizer_follows_the_batches_until_the_release_and_then_holds():
    batch = model(1.0)
    assert batch._q_scale(7.0) == 7.0 and batch._q_scale(0.0) == 1e-3      # default: each batch's |Q|
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, release_step=10_000,
                     q_scale_at_release=True, learning_starts=200, batch_size=64, seed=0, device="cpu",
                     policy_kwargs={"net_arch": [32, 32]})
    m.learn(200)
    m.train(gradient_steps=20, batch_size=64)                     # warm-up: actor steps start the average
    warm = m.q_scale
    assert warm is not None and warm > 0
    assert m._q_scale(warm + 1_000.0) == pytest.approx(warm + 1.0)  # an average with a 1,000-update time constant
    m.num_timesteps = 10_000                                      # released: the batches no longer move it
    held = m.q_scale
    for value in (0.01, held * 10, 1e6):
        assert m._q_scale(value) == held
    m.train(gradient_steps=20, batch_size=64)
    assert m.q_scale == held


def test_acting_by_q_executes_whichever_action_the_critics_value_higher_once_the_actor_is_released():
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, release_step=300,
                     act_by_q=True, learning_starts=100, batch_size=32, seed=0, device="cpu",
                     policy_kwargs={"net_arch": [32, 32]})
    m.min_q = lambda obs, actions: actions[:, :1]          # critics that value a larger action more
    m.learn(600)
    stored = m.replay_buffer.actions[:600, 0, 0]
    bc = stored == np.float32(TARGET)
    assert not bc[:300].any()                              # until the release: SB3's own actions
    assert np.all(bc[300:] | (stored[300:] > TARGET))      # then the better of the two, every step
    assert 0 < bc[300:].sum() < 300
    assert m.bc_acted_total == [int(bc[300:].sum()), 300]
    assert m.bc_action_share() == pytest.approx(bc[300:].mean())
    plain = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, release_step=300,
                         learning_starts=100, batch_size=32, seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    plain.learn(400)
    assert not (plain.replay_buffer.actions[:400, 0, 0] == np.float32(TARGET)).any()
    assert plain.bc_action_share() is None


def test_a_ramped_distance_target_grows_linearly_from_zero_at_the_release_and_the_weight_follows_it():
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=2.0, bc_target_mse=0.01,
                     bc_target_ramp_steps=1_000, release_step=500, device="cpu")
    for steps, target in ((0, 0.0), (500, 0.0), (750, 0.0025), (1_500, 0.01), (9_000, 0.01)):
        m.num_timesteps = steps
        assert m.current_bc_target() == pytest.approx(target)
    assert constrained(0.3).current_bc_target() == 0.3                     # no ramp: all of it at once
    ramped = constrained(1.0)                                               # the fresh actor is ~0.25 from BC
    ramped.bc_target_ramp_steps = 1_000_000                                 # the target stays near 0: pulled in
    ramped.train(gradient_steps=100, batch_size=64)
    assert ramped.current_bc_coef() > 2.2


def test_the_tuned_prior_weight_falls_to_bc_coef_final_and_no_lower():
    free, floored = constrained(1.0), constrained(1.0)           # the actor is nearer than the target: it falls
    floored.bc_coef_final = 1.5
    for m in (free, floored):
        m.train(gradient_steps=100, batch_size=64)
    assert free.current_bc_coef() < 1.4
    assert floored.current_bc_coef() == pytest.approx(1.5)


def test_the_prior_weights_by_disagreement_average_one_and_follow_the_critics_spread():
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, device="cpu")
    q = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 2.0], [0.0, 6.0, 0.0, 6.0]])   # spreads 0, s, 3s
    sigma = q.std(dim=1)                                                               # as the actor step does
    assert torch.equal(m.prior_state_weights(sigma), torch.ones(3))                     # beta 0: the same pull
    m.bc_by_disagreement = 1.0
    assert m.prior_state_weights(sigma).tolist() == pytest.approx([0.0, 0.75, 2.25])
    m.bc_by_disagreement = 0.5
    assert m.prior_state_weights(sigma).tolist() == pytest.approx([0.5, 0.875, 1.625])
    assert float(m.prior_state_weights(sigma).mean()) == pytest.approx(1.0)


def test_the_prior_holds_the_actor_nearer_bc_where_the_critics_disagree():
    """Critics that agree on states with cos(theta) <= 0 and disagree on the others (whatever the action, so only
    the prior moves the actor): the same pull everywhere leaves the actor about as far from BC on both kinds;
    shared out by disagreement it holds the second kind nearer and lets go of the first."""
    def run(beta: float) -> tuple[float, float]:
        m = model(bc_coef=1.0)
        m.bc_by_disagreement = beta
        obs = torch.as_tensor(m.replay_buffer.observations[:200, 0])
        spread = (obs[:, :1] > 0).float() + 0.01
        m.critic = lambda o, a: [j * spread[: len(o)] + 0 * a.sum() for j in range(4)]
        logs = {k: [] for k in ("actor_loss", "q_pi", "bc_mse", "bc_coef", "q_std")}
        for _ in range(60):
            actions_pi, log_prob = m.actor.action_log_prob(obs)
            m._actor_step(obs, actions_pi, log_prob.reshape(-1, 1), torch.tensor(0.0), logs)
        with torch.no_grad():
            d = ((m.actor(obs, deterministic=True) - TARGET) ** 2).squeeze(1)
        return float(d[obs[:, 0] > 0].mean()), float(d[obs[:, 0] <= 0].mean())

    uniform, shared = run(0.0), run(1.0)
    assert shared[1] > 2 * uniform[1]                     # where the critics agree: let go
    assert shared[0] < 0.5 * shared[1]                    # held nearer where they disagree
    assert shared[0] / shared[1] < 0.25 * uniform[0] / uniform[1]


def test_the_actor_value_is_the_q_networks_minimum_or_mean_and_the_target_a_random_subsets_minimum():
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, device="cpu",
                     policy_kwargs={"n_critics": 4})
    q = torch.tensor([[1.0, 2.0, 3.0, 6.0], [-4.0, 0.0, 0.0, 0.0]])
    assert m.actor_value(q).squeeze(1).tolist() == [1.0, -4.0]                # SB3's minimum by default
    m.actor_q = "mean"
    assert m.actor_value(q).squeeze(1).tolist() == [3.0, -1.0]
    assert torch.equal(m.target_subset(q), q)                                 # 0: all four
    m.target_q_subset = 2
    torch.manual_seed(0)
    drawn = [m.target_subset(q) for _ in range(200)]
    assert all(d.shape == (2, 2) for d in drawn)
    columns = [tuple(int((q[0] == v).nonzero()) for v in d[0]) for d in drawn]
    assert all(len(set(c)) == 2 for c in columns)                             # two different networks each time
    assert {i for c in columns for i in c} == {0, 1, 2, 3}                    # every network gets drawn
    assert all(torch.equal(d[1], q[1, list(c)]) for d, c in zip(drawn, columns))   # the same ones for every state


@pytest.mark.parametrize("actor_q", ["min", "mean"])
def test_the_actor_climbs_the_value_it_is_told_to(actor_q):
    """Four critics linear in the action, three sloping down and one up: their minimum, min(1 - a, a), peaks at
    a = 0.5; their mean, (3 - 2a) / 4, falls with a. The actor (no prior pull; it starts near 0) goes where its
    value says."""
    m = model(bc_coef=0.0)
    m.actor_q = actor_q
    obs = torch.as_tensor(m.replay_buffer.observations[:200, 0])
    m.critic = lambda o, a: [1 - a, 1 - a, 1 - a, a]
    logs = {k: [] for k in ("actor_loss", "q_pi", "bc_mse", "bc_coef", "q_std")}
    for _ in range(150):
        actions_pi, log_prob = m.actor.action_log_prob(obs)
        m._actor_step(obs, actions_pi, log_prob.reshape(-1, 1), torch.tensor(0.0), logs)
    with torch.no_grad():
        mean_action = float(m.actor(obs, deterministic=True).mean())
    if actor_q == "mean":
        assert mean_action < -0.8
    else:
        assert mean_action == pytest.approx(0.5, abs=0.1)


def test_the_actor_steps_at_its_own_learning_rate_and_the_critics_at_the_shared_one():
    def moved(actor_lr: float | None) -> tuple[float, SACWithPrior]:
        m = model(bc_coef=1.0)
        m.actor_learning_rate = actor_lr
        before = torch.cat([p.detach().flatten().clone() for p in m.actor.parameters()])
        m.train(gradient_steps=30, batch_size=64)
        after = torch.cat([p.detach().flatten() for p in m.actor.parameters()])
        return float((after - before).abs().mean()), m

    shared, m_shared = moved(None)
    slow, m_slow = moved(1e-4)
    assert [g["lr"] for g in m_slow.actor.optimizer.param_groups] == [1e-4]
    assert [g["lr"] for g in m_slow.critic.optimizer.param_groups] == [1e-3]
    assert [g["lr"] for g in m_shared.actor.optimizer.param_groups] == [1e-3]
    assert slow < 0.2 * shared                  # Adam's steps scale with the learning rate


def test_the_critic_update_takes_its_target_from_the_drawn_subset():
    m = SACWithPrior("MlpPolicy", gym.make("Pendulum-v1"), prior=constant_prior, bc_coef=1.0, learning_starts=50,
                     batch_size=16, seed=0, device="cpu", target_q_subset=2,
                     policy_kwargs={"net_arch": [16], "n_critics": 4})
    shapes = []
    real = m.target_subset
    m.target_subset = lambda q: shapes.append((tuple(q.shape), tuple(real(q).shape))) or real(q)
    m.learn(52)
    assert shapes and set(shapes) == {((16, 4), (16, 2))}


def test_conservative_critics_value_the_actors_samples_below_the_buffers_actions():
    """The same critic updates with and without `cql_alpha`, for an actor that always samples 0.9 where the
    buffer holds random actions: the penalty values the actor's action below the buffer's at the same states,
    where the plain critics put the two about level; the gap is logged."""
    def gap(alpha: float) -> tuple[float, list[float]]:
        m = model(bc_coef=1.0)
        m.cql_alpha = alpha
        m.actor.action_log_prob = lambda o: (torch.full((len(o), 1), 0.9), torch.zeros(len(o)))
        ent_coef, logs = torch.tensor(0.01), {"cql_gap": []}
        for _ in range(300):
            m._critic_step(m.replay_buffer.sample(64), ent_coef, logs=logs)
        obs = torch.as_tensor(m.replay_buffer.observations[:200, 0])
        acts = torch.as_tensor(m.replay_buffer.actions[:200, 0])
        with torch.no_grad():
            actions_pi, _ = m.actor.action_log_prob(obs)
            return float((m.critic(obs, acts)[0] - m.critic(obs, actions_pi)[0]).mean()), logs["cql_gap"]

    plain, plain_logged = gap(0.0)
    conservative, logged = gap(1.0)
    assert abs(plain) < 0.5 and not plain_logged
    assert conservative > plain + 1.0
    assert len(logged) == 300 and np.mean(logged[-50:]) < -1.0   # Q(s, a_pi) - Q(s, a) < 0
