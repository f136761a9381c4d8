"""Demonstrations I/O and the BC -> PPO policy transfer."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from training import demos as demo_io
from training.common import PipelineError, make_vec_env
from training.config import DemoConfig, PipelineConfig, PolicyConfig
from training.ppo_stage import build_model
from training.policies import load_policy, make_policy, policy_meta, save_policy


DEMO_ENV = config_tree.apply(EnvConfig(), "episode_seconds", 5.0)     # the default env in shorter episodes


@pytest.fixture(scope="module")
def small_demo():
    return demo_io.generate(DemoConfig(n_episodes=2, n_envs=1, noise=0.05), DEMO_ENV, seed=0, progress=False)


@pytest.fixture(scope="module")
def spaces():
    env = gym.make("PiDog-v2")
    yield env.observation_space, env.action_space
    env.close()


def test_generated_demos_label_with_the_clean_expert_action(small_demo):
    from pidog_env.gaits import TrotGait
    env = gym.make("PiDog-v2")
    gait = TrotGait.for_env(env)
    assert len(small_demo.episode_lengths) == 2 and len(small_demo) == small_demo.episode_lengths.sum()
    np.testing.assert_allclose(small_demo.acts, gait(small_demo.obs), atol=1e-6)       # labels = clean expert
    noise = small_demo.acts_executed - small_demo.acts
    assert 0.02 < noise.std() < 0.08                                                   # DART noise was executed


def test_npz_round_trip_keeps_arrays_and_metadata(tmp_path, small_demo, spaces):
    path = tmp_path / "demonstrations.npz"
    demo_io.save(small_demo, path)
    loaded = demo_io.load(path, *spaces)
    np.testing.assert_array_equal(loaded.obs, small_demo.obs)
    np.testing.assert_array_equal(loaded.acts, small_demo.acts)
    assert loaded.meta["source"] == "trot" and loaded.meta["env_config_hash"] == DEMO_ENV.hash()
    with np.load(path, allow_pickle=False) as z:                                       # no pickle inside
        assert set(z.files) >= {"obs", "acts", "meta"}


def test_mismatched_spaces_are_rejected_with_a_clear_message(tmp_path, small_demo):
    path = tmp_path / "demonstrations.npz"
    demo_io.save(small_demo, path)
    other = gym.make("PiDog-v2", history=2)
    with pytest.raises(PipelineError, match="observation_space Box\\(16,\\) does not match the env's Box\\(48,\\)"):
        demo_io.load(path, other.observation_space, other.action_space)


def test_pickled_demos_are_refused_unless_allowed(tmp_path, small_demo, spaces):
    from imitation.data import types
    path = tmp_path / "demos.pkl"
    n = len(small_demo)
    dones = np.zeros(n, bool)
    dones[np.cumsum(small_demo.episode_lengths) - 1] = True
    with open(path, "wb") as f:
        pickle.dump(types.Transitions(obs=small_demo.obs, acts=small_demo.acts, infos=np.array([{}] * n),
                                      next_obs=small_demo.obs, dones=dones), f)
    with pytest.raises(PipelineError, match="--allow-pickle"):
        demo_io.load(path, *spaces)
    with pytest.warns(UserWarning, match="pickled"):
        loaded = demo_io.load(path, *spaces, allow_pickle=True)
    np.testing.assert_array_equal(loaded.acts, small_demo.acts)
    np.testing.assert_array_equal(loaded.episode_lengths, small_demo.episode_lengths)


def test_bc_state_dict_loads_into_ppo_strictly_and_first_actions_match(tmp_path, small_demo):
    cfg = PipelineConfig(seed=3)
    env_cfg = EnvConfig()
    venv = make_vec_env(env_cfg, 1, seed=0, subprocess=False)
    bc_policy = make_policy(venv.observation_space, venv.action_space, cfg.policy)
    with torch.no_grad():                              # make the weights clearly not PPO's fresh init
        for p in bc_policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "bc.pth"
    save_policy(path, bc_policy, policy_meta(bc_policy, cfg.policy, env_cfg))
    loaded, meta = load_policy(path)
    model = build_model(cfg, venv, from_bc=True)
    missing = model.policy.load_state_dict(loaded.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    obs = small_demo.obs[:50]
    np.testing.assert_array_equal(bc_policy.predict(obs, deterministic=True)[0],
                                  model.policy.predict(obs, deterministic=True)[0])
    venv.close()


def test_policy_files_load_without_pickle_and_foreign_zips_need_permission(tmp_path):
    import zipfile
    bad = tmp_path / "foreign.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("data", "{}")
    with pytest.raises(PipelineError, match="--allow-pickle"):
        load_policy(bad)
    fake = tmp_path / "fake.pth"
    torch.save({"something": 1}, fake)
    with pytest.raises(PipelineError, match="not a policy saved by this project"):
        load_policy(fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PipelineError, match="not found"):
            load_policy(tmp_path / "missing.pth")


def test_policy_config_kwargs_are_shared(spaces):
    cfg = PolicyConfig(net_arch=(32, 16))
    policy = make_policy(*spaces, cfg)
    sizes = [m.out_features for m in policy.mlp_extractor.policy_net if hasattr(m, "out_features")]
    assert sizes == [32, 16]


@pytest.mark.slow
def test_camera_policy_carries_the_bc_encoder_into_ppo_and_fine_tunes_it(tmp_path):
    from training.bc import train_bc
    from training.config import BCConfig
    env_cfg = config_tree.apply(DEMO_ENV, "use_camera", True)
    demo = demo_io.generate(DemoConfig(n_episodes=1, n_envs=1), env_cfg, seed=0, progress=False)     # 250 frames
    assert demo.obs["image"].shape[1:] == (3, 48, 48)
    bc = train_bc(demo, None, env_cfg, PolicyConfig(), BCConfig(epochs=2, batch_size=256), tmp_path, 0, progress=False)
    bc_state = {k: v.clone() for k, v in bc.policy.state_dict().items()}
    for freeze in (False,):
        cfg = PipelineConfig(seed=0, env=env_cfg)
        cfg.ppo.n_steps, cfg.ppo.batch_size = 256, 128
        cfg.ppo.value_warmup_steps = cfg.ppo.actor_ramp_steps = 0          # the actor (and encoder) learn at once
        venv = make_vec_env(env_cfg, 1, seed=0, subprocess=False)
        model = build_model(cfg, venv, from_bc=True)
        model.policy.load_state_dict(bc_state, strict=True)
        model.learn(512)
        enc = {k: v for k, v in model.policy.state_dict().items() if k.startswith("features_extractor.")}
        assert enc and any("cnn" in k for k in enc)
        same = all(torch.equal(v, bc_state[k]) for k, v in enc.items())
        assert not same, "the encoder learns with the actor"
        venv.close()
