"""Teacher -> student: the privileged input, the student's start, DAgger, export and the runtime's history."""

import json

import numpy as np
import pytest
import torch

import gymnasium as gym
import pidog_env  # noqa: F401
from pidog_env import config_tree
from pidog_env.config import EnvConfig
from pidog_env.env import observation_space
from pidog_env.randomization import PHYSICS_SIZE, PRIVILEGED_SIZE
from training.common import PipelineError
from training.config import ConfigError, DistillConfig, PipelineConfig, PolicyConfig
from training.distill import Views, distill, init_student, mean_action, student_config
from training.policies import make_policy, policy_meta, save_policy

@pytest.fixture(autouse=True)
def no_tqdm_monitor(monkeypatch):
    """tqdm's monitor thread outlives a progress bar; the runtime tests count the process's threads."""
    import tqdm
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)


TEACHER = config_tree.apply(config_tree.apply(EnvConfig(), "obs.episode_physics", True), "episode_seconds", 2.0)


def _teacher(seed=0):
    torch.manual_seed(seed)
    policy = make_policy(observation_space(TEACHER), gym.spaces.Box(-1, 1, (8,), np.float32), PolicyConfig(),
                         env_cfg=TEACHER)
    policy.set_training_mode(False)
    return policy


def test_the_privileged_input_is_what_the_episode_drew():
    env = gym.make("PiDog-v2", config=TEACHER)
    obs, _ = env.reset(seed=3)
    u = env.unwrapped
    assert obs.shape == (16 + PRIVILEGED_SIZE,) == env.observation_space.shape
    tail = obs[16:]
    np.testing.assert_allclose(tail, u.privileged(), atol=1e-6)
    assert tail[5] == pytest.approx((u._episode.supply - 0.95) / 0.1, abs=1e-5)      # the supply factor
    assert np.all(np.abs(tail[:PHYSICS_SIZE]) <= 1.0 + 1e-6)      # inside the training ranges: order 1
    other, _ = env.reset(seed=4)
    assert not np.allclose(other[16:], tail)                      # another episode, other physics
    pushed = False
    for _ in range(300):                                          # pushes come every 2-5 s
        obs, *_ = env.step(np.zeros(8))
        if obs[-1] < 0.5:                                         # seconds since the last push: a fresh one
            pushed = True
            assert np.any(obs[-3:-1] != 0.0) and np.all(np.abs(obs[-3:-1]) <= 1.0)
    assert pushed
    nominal = gym.make("PiDog-v2", config=TEACHER, randomize=False)
    obs, _ = nominal.reset(seed=0)
    assert obs[16 + 5] == pytest.approx(0.5) and obs[-1] == 1.0                   # supply 1; no push yet
    assert obs[16] == pytest.approx((1.0 - 0.85) / 0.35)                          # the model's friction, 1.0


def test_a_student_starts_as_the_teacher_without_its_privileged_columns():
    teacher = _teacher()
    views = Views(TEACHER, history=3)
    s_cfg = student_config(TEACHER, 3)
    student = make_policy(observation_space(s_cfg), teacher.action_space, PolicyConfig(), env_cfg=s_cfg)
    init_student(student, teacher, views)
    env = gym.make("PiDog-v2", config=config_tree.apply(TEACHER, "obs.history", 3))
    obs = np.stack([env.reset(seed=s)[0] for s in range(4)])
    blind = views.teacher(obs).copy()
    blind[:, -PRIVILEGED_SIZE:] = 0.0                       # the teacher without its privileged input
    with torch.no_grad():
        want = mean_action(teacher, torch.as_tensor(blind))
        got = mean_action(student, torch.as_tensor(views.of_student(obs)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_dagger_fits_the_teacher_on_the_states_the_student_visits():
    teacher = _teacher()
    # A teacher that acts on the seconds since the last push alone (1.0 until the first push): the blind
    # student (that column zeroed) is off by a shift on every state, which regression onto the labels removes.
    first = teacher.mlp_extractor.policy_net[0]
    with torch.no_grad():
        kept = first.weight[:, -1].clone()
        first.weight.zero_()
        first.weight[:, -1] = 3 * kept
        teacher.action_net.weight *= 30
    views = Views(TEACHER, history=2)
    env = gym.make("PiDog-v2", config=config_tree.apply(TEACHER, "obs.history", 2))
    obs = np.stack([env.reset(seed=900 + s)[0] for s in range(64)])      # episodes DAgger never saw
    with torch.no_grad():
        labels = mean_action(teacher, torch.as_tensor(views.teacher(obs))).clamp(-1, 1)
    s_cfg = student_config(TEACHER, 2)
    blind = make_policy(observation_space(s_cfg), teacher.action_space, PolicyConfig(), env_cfg=s_cfg)
    init_student(blind, teacher, views)

    def error(policy):
        with torch.no_grad():
            return float(((mean_action(policy, torch.as_tensor(views.of_student(obs))) - labels) ** 2).mean())
    cfg = DistillConfig(history=2, steps=900)
    student, s_cfg, result = distill(teacher, TEACHER, cfg, PolicyConfig(), seed=0, log=lambda line: None,
                                     iterations=3, n_envs=3, epochs=20)
    curve = result["curve"]
    assert [r["driver"] for r in curve] == ["teacher", "student", "student"]
    assert [r["dataset"] for r in curve] == [300, 600, 900] and result["dataset_steps"] == 900
    assert error(student) < 0.5 * error(blind)            # it learned what the missing input changes, on average
    assert s_cfg.obs.history == 2 and not s_cfg.obs.episode_physics
    assert student.observation_space.shape == (48,)


def test_distillation_settings_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="env.obs.episode_physics"):
        config_tree.validate(config_tree.apply(PipelineConfig(), "distill.history", 15))
    cfg = config_tree.apply(config_tree.apply(PipelineConfig(), "env.obs.episode_physics", True), "distill.history", 15)
    with pytest.raises(ConfigError, match="rl.total_timesteps"):
        config_tree.validate(config_tree.apply(cfg, "rl.total_timesteps", 0))
    with pytest.raises(PipelineError, match="episode_physics"):
        distill(_teacher(), EnvConfig(), DistillConfig(history=2), PolicyConfig(), 0)


@pytest.mark.slow
def test_a_student_exports_and_the_runtime_keeps_its_history_over_a_whole_episode(tmp_path):
    from deploy.hardware import MujocoHardware
    from deploy.policy_spec import PolicySpec
    from deploy.runtime import ControlLoop, OnnxPolicy
    from training.export import export
    from training.policies import load_policy
    teacher = _teacher()
    save_policy(tmp_path / "teacher.pth", teacher, policy_meta(teacher, PolicyConfig(), TEACHER))
    with pytest.raises(PipelineError, match="teacher"):          # the robot cannot measure its input
        export(tmp_path / "teacher.pth", tmp_path / "t_export")
    assert not (tmp_path / "t_export").exists()
    cfg = DistillConfig(history=15, steps=400)
    student, s_cfg, _ = distill(teacher, TEACHER, cfg, PolicyConfig(), seed=0, log=lambda line: None,
                                iterations=2, n_envs=2, epochs=2)
    save_policy(tmp_path / "student.pth", student, policy_meta(student, PolicyConfig(), s_cfg))
    info = export(tmp_path / "student.pth", tmp_path / "export", check_steps=200)
    assert info["max_abs_diff"] <= 1e-5
    spec = PolicySpec.load(tmp_path / "export" / "policy.json")
    assert spec.history == 15 and spec.obs_size == 16 * 16
    loaded, _ = load_policy(tmp_path / "student.pth")
    hw = MujocoHardware(randomize=True, seed=5, config=s_cfg)
    loop = ControlLoop(spec, OnnxPolicy(tmp_path / "export" / "policy.onnx", spec), hw, realtime=False)
    loop.start()
    ticks = 0
    while ticks < s_cfg.episode_steps and not hw.terminated:      # the whole episode
        env_obs = hw.last_obs                              # the env's stacked frames for the next action
        assert loop.tick()
        ticks += 1
        np.testing.assert_allclose(loop.last_obs, env_obs, atol=1e-6)
    assert ticks > 15                                      # past the history's length at least
    with torch.no_grad():                                  # the runtime's buffer feeds the network the same
        want = mean_action(loaded, torch.as_tensor(loop.last_obs[None].astype(np.float32))).clamp(-1, 1).numpy()
    np.testing.assert_allclose(OnnxPolicy(tmp_path / "export" / "policy.onnx", spec)(loop.last_obs), want[0],
                               atol=1e-5)
    hw.close()


def _train(*args):
    """The documented script as a user runs it (its own process: the run's threads end with it)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "train_pretrain_finetune.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_the_tiny_robust_run_ships_a_student_and_a_stop_while_distilling_resumes_there(tmp_path):
    out = _train("--preset", "tiny", "--preset", "robust", "--output-dir", tmp_path, "--experiment-name", "r")
    assert "distill 8/8: student drove" in out and "export it with: pidog export --model" in out
    run = tmp_path / "r"
    first = torch.load(run / "student_policy.pth", weights_only=True)["state_dict"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["distill"]["model"] == str(run / "student_policy.pth") and summary["distill"]["history"] == 15
    assert len(json.loads((run / "distill_curve.json").read_text())) == 8
    (run / "student_policy.pth").unlink()                 # as if stopped during the distillation
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    _train("--resume", "--output-dir", tmp_path, "--experiment-name", "r")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == checkpoints      # PPO did not run again
    again = torch.load(run / "student_policy.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], again[k]) for k in first)                         # the same student
