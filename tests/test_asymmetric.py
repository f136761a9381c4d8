"""The asymmetric actor-critic: the critic sees privileged sim state, the actor (and the export) does not."""

import numpy as np
import onnx
import pytest
import torch

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from pidog_env.env import actor_obs_size, observation_space
from pidog_env.observation import CRITIC_STATE_SIZE
from training.config import PolicyConfig
from training.policies import AsymmetricActorCriticPolicy, make_policy, policy_meta, save_policy

CFG = config_tree.apply(EnvConfig(), "obs.critic_state", True)


@pytest.fixture(scope="module")
def policy():
    from pidog_env.env import action_space
    torch.manual_seed(0)
    return make_policy(observation_space(CFG), action_space(CFG), PolicyConfig(), env_cfg=CFG)


def test_the_env_appends_the_critic_state_after_the_actors_observation():
    import gymnasium as gym
    env = gym.make("PiDog-v0", config=CFG)
    obs, _ = env.reset(seed=0)
    n = actor_obs_size(CFG)
    assert obs.shape == (n + CRITIC_STATE_SIZE,) == observation_space(CFG).shape
    plain, _ = gym.make("PiDog-v0").reset(seed=0)
    np.testing.assert_allclose(obs[:n], plain, atol=1e-6)               # the actor's part is today's observation
    for _ in range(30):
        obs, *_ = env.step(np.zeros(8, np.float32))
    base = env.unwrapped
    np.testing.assert_allclose(obs[n + 19], base.data.qpos[2] * 10, atol=1e-5)          # torso height
    assert obs[n + 20:n + 24].tolist() == [1.0, 1.0, 1.0, 1.0]                          # standing: 4 contacts
    assert obs[n + 26] == pytest.approx(base._episode_params["friction"])


def test_the_actor_ignores_the_critic_state_and_the_critic_uses_it(policy):
    assert isinstance(policy, AsymmetricActorCriticPolicy)
    n = actor_obs_size(CFG)
    obs = torch.zeros(4, n + CRITIC_STATE_SIZE)
    obs[:, n:] = torch.randn(4, CRITIC_STATE_SIZE)
    with torch.no_grad():
        actions = policy.get_distribution(obs).distribution.mean
        values = policy.predict_values(obs)
    assert torch.allclose(actions, actions[0].expand_as(actions))             # same actor input -> same action
    assert values.std() > 0                                                   # the critic tells them apart


def test_an_asymmetric_policy_exports_the_actor_alone_and_runs_in_the_runtime(policy, tmp_path):
    from deploy.export import export
    from deploy.hardware import MujocoHardware
    from deploy.policy_spec import PolicySpec
    from deploy.runtime import ControlLoop, OnnxPolicy, Stop
    save_policy(tmp_path / "p.pth", policy, policy_meta(policy, PolicyConfig(), CFG))
    info = export(tmp_path / "p.pth", tmp_path / "export", check_steps=30)
    assert info["max_abs_diff"] <= 1e-5
    graph = onnx.load(str(tmp_path / "export" / "policy.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[1].dim_value == actor_obs_size(CFG) == 16
    weights = {init.name: init for init in graph.initializer}
    assert not any("value" in name or "vf" in name for name in weights)       # no critic in the graph
    actor = sum(p.numel() for name, p in policy.named_parameters()
                if name.startswith(("mlp_extractor.policy_net", "action_net")))
    assert sum(np.prod(w.dims) for w in weights.values()) <= actor          # the actor's weights, nothing more
    spec = PolicySpec.load(tmp_path / "export" / "policy.json")
    hw = MujocoHardware(seed=0)
    stop = ControlLoop(spec, OnnxPolicy(tmp_path / "export" / "policy.onnx", spec), hw, realtime=False).run(0.5)
    assert stop == Stop("done", "time limit reached") and len(hw.poses) == 2


@pytest.mark.slow
def test_bc_to_ppo_hand_off_with_the_privileged_critic(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "train_pretrain_finetune.py"), "--preset", "tiny", "--set",
                           "env.obs.critic_state=true", "--total-rl-timesteps", "1024", "--output-dir", str(tmp_path),
                           "--experiment-name", "asym"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PPO initialized from BC (strict state-dict load)" in proc.stdout
    meta = json.loads(__import__("zipfile").ZipFile(tmp_path / "asym" / "final_model.zip").read("pidog_meta.json"))
    assert meta["policy_type"] == "AsymmetricMlpPolicy"
    from training.policies import load_policy
    policy, _ = load_policy(tmp_path / "asym" / "final_model.zip")
    assert isinstance(policy, AsymmetricActorCriticPolicy) and policy.actor_dim == 16


def test_the_robustness_bench_runs_an_asymmetric_policy_on_the_robots_observation(policy, tmp_path):
    # It once fed the runtime's 16 numbers to a policy that takes 48: every step raised, the runtime stopped
    # with an error and the bench counted 0 m/s and no fall.
    from bench.robustness import load
    from deploy.hardware import MujocoHardware
    from deploy.runtime import ControlLoop
    save_policy(tmp_path / "p.pth", policy, policy_meta(policy, PolicyConfig(), CFG))
    spec, act = load("asym", str(tmp_path / "p.pth"), EnvConfig())
    obs = np.zeros(actor_obs_size(CFG), np.float32)
    full = np.concatenate([obs, np.zeros(CRITIC_STATE_SIZE, np.float32)])
    np.testing.assert_allclose(act(obs), policy.predict(full, deterministic=True)[0])
    stop = ControlLoop(spec, act, MujocoHardware(seed=0), realtime=False).run(0.3)
    assert stop.kind == "done"
