"""The config tree: strict loading, overrides, validation, derived timing, presets and the CLI layer."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from pidog_env import config_tree
from pidog_env.config import REWARD_TERMS, EnvConfig
from pidog_env.config_tree import ConfigError
from pidog_env.env import KEYWORD_SHORTCUTS, action_space, observation_space
from training import cli, presets
from training.config import PipelineConfig

ROOT = Path(__file__).resolve().parent.parent


def test_trees_round_trip_through_json_and_unknown_keys_are_named():
    cfg = PipelineConfig(seed=7)
    cfg = config_tree.apply(cfg, "policy.net_arch", [64, 32])
    cfg = config_tree.apply(cfg, "env.randomization.friction", [0.3, 0.9])
    back = config_tree.from_dict(PipelineConfig, json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.env.hash() == cfg.env.hash()
    data = cfg.to_dict()
    data["env"]["obs"]["histroy"] = 3
    with pytest.raises(ConfigError, match=r"unknown setting 'env\.obs\.histroy' \(did you mean 'history'\?\)"):
        config_tree.from_dict(PipelineConfig, data)
    with pytest.raises(ConfigError, match="ppo.gamma must be a number"):
        config_tree.apply(cfg, "ppo.gamma", "high")


def test_every_setting_has_help_and_the_defaults_validate():
    cfg = PipelineConfig()
    config_tree.validate(cfg)
    leaves = list(config_tree.describe(cfg))
    assert len(leaves) > 80
    assert [k for k, _, h in leaves if not h] == []


@pytest.mark.parametrize("key,text,message", [
    ("ppo.learning_rate", "0", "ppo.learning_rate must be > 0"),
    ("ppo.learning_rate", "nan", "must be a finite number"),
    ("ppo.gamma", "1.01", "ppo.gamma must be <= 1"),
    ("rl.n_envs", "0", "rl.n_envs must be >= 1"),
    ("env.randomization.latency_steps", "[3, 1]", "low <= high"),
    ("env.reward.scales.fall", "inf", "env.reward.scales.fall must be a finite number"),
    ("env.ctrl_dt", "0.021", "whole multiple of sim_dt"),
    ("experiment_name", "../escape", "plain folder name"),
    ("experiment_name", "/etc", "plain folder name"),
    ("rl.algo", "ppo2", "rl.algo must be one of ppo, sac, td3"),
])
def test_bad_values_are_one_line_config_errors(key, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")) as exc:
        config_tree.validate(config_tree.apply_text(PipelineConfig(), key, text))
    assert "\n" not in str(exc.value)


def test_string_settings_take_command_line_text_as_is():
    cfg = config_tree.apply_text(PipelineConfig(), "experiment_name", "2024")
    assert cfg.experiment_name == "2024"
    cfg = config_tree.apply_text(cfg, "pretrained_model", "null")
    assert cfg.pretrained_model is None
    cfg = config_tree.apply_text(cfg, "env.reward.scales", '{"fall": -80}')
    assert cfg.env.reward.scales["fall"] == -80 and set(cfg.env.reward.scales) == set(REWARD_TERMS)


def test_timing_is_set_in_seconds_and_the_time_limit_derives_from_it():
    cfg = config_tree.apply(EnvConfig(), "episode_seconds", 0.5)
    cfg = config_tree.apply(cfg, "randomization.enabled", False)
    assert (cfg.frame_skip, cfg.episode_steps) == (5, 25)
    env = gym.make("PiDog-v2", config=cfg)
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(8, np.float32))          # hold the stand pose
        steps += 1
        assert not terminated
    assert steps == 25 and env.unwrapped.model.opt.timestep == cfg.sim_dt
    env.close()
    fast = gym.make("PiDog-v2", config=config_tree.apply(EnvConfig(), "ctrl_dt", 0.04))
    assert fast.unwrapped.dt == 0.04 and fast.unwrapped.cfg.frame_skip == 10 and fast.metadata["render_fps"] == 25
    fast.close()


@pytest.mark.parametrize("settings", [{}, {"obs.history": 2}, {"obs.ultrasonic": True},
                                      {"use_camera": True, "camera_size": 32}])
def test_spaces_are_computed_from_the_config_without_an_env(settings):
    cfg = EnvConfig()
    for key, value in settings.items():
        cfg = config_tree.apply(cfg, key, value)
    env = gym.make("PiDog-v2", config=cfg)
    assert observation_space(cfg) == env.observation_space and action_space(cfg) == env.action_space
    env.close()


def test_env_keyword_shortcuts_go_through_the_same_override_path():
    env = gym.make("PiDog-v2", randomize=False, history=2, episode_seconds=1.0)
    cfg = env.unwrapped.cfg
    assert not cfg.randomization.enabled and cfg.obs.history == 2 and cfg.episode_steps == 50
    env.close()
    assert set(KEYWORD_SHORTCUTS.values()) <= {k for k, _, _ in config_tree.describe(EnvConfig())}
    with pytest.raises(TypeError, match="unknown option 'histroy'"):
        gym.make("PiDog-v2", histroy=2)
    with pytest.raises(ConfigError, match="obs.history must be >= 0"):
        gym.make("PiDog-v2", history=-1)


def test_presets_are_data_and_every_preset_key_is_a_setting():
    preset_files = sorted((ROOT / "training" / "presets").glob("*.json"))
    assert {p.stem for p in preset_files} >= {"quick", "tiny", "camera", "sample_efficiency", "sample_efficiency_quick"}
    for p in preset_files:
        cfg = presets.build_config([], [("@preset", p.stem)])       # raises on an unknown key or bad value
        assert cfg != PipelineConfig(experiment_name=cfg.experiment_name), p.stem
    quick = presets.build_config([], [("@preset", "quick"), ("rl.total_timesteps", "5000")])
    assert quick.rl.total_timesteps == 5000 and quick.bc.epochs == 30    # typed settings win over presets


def test_aliases_name_real_settings_and_later_flags_win():
    keys = {k for k, _, _ in config_tree.describe(PipelineConfig())}
    for _, _, groups in cli.PIPELINES.values():
        for _, aliases in groups:
            for a in aliases:
                assert set(a.keys) <= keys, a.flag
    args = cli.build_parser().parse_args(["train", "--learning-rate", "1e-4", "--set", "ppo.learning_rate=2e-4",
                                          "--quick", "--no-live"])
    cfg = presets.build_config([], args.assignments)
    assert cfg.ppo.learning_rate == 2e-4 and cfg.live is False and cfg.rl.total_timesteps == 20_000


def test_config_command_prints_the_resolved_tree(capsys):
    assert cli.main(["config", "--set", "ppo.gamma=0.99", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "ppo.gamma = 0.99" in out and "rl.total_timesteps = 20000" in out and "env.reward.scales = " in out


def test_readme_documents_the_settings_it_names():
    """Every `--set key=...` and `key.path` setting the README shows exists in the config tree."""
    import re
    keys = {k for k, _, _ in config_tree.describe(PipelineConfig())}
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"--set ([a-z_.]+)=", text))
    assert named and named <= keys | {f"env.reward.scales.{t}" for t in REWARD_TERMS}, named - keys


def test_every_ppo_setting_reaches_the_model(tmp_path):
    """A PPO setting added to the config but not passed to the model fails here."""
    import dataclasses

    from stable_baselines3.common.vec_env import DummyVecEnv

    from training.common import make_env
    from training.experiment import Experiment
    from training.ppo_stage import build_model, make_training_envs
    cfg = config_tree.apply(config_tree.apply(PipelineConfig(), "rl.vec_env", "dummy"), "rl.n_envs", 1)
    odd = {"learning_rate": 1.23e-4, "n_steps": 96, "batch_size": 48, "n_epochs": 3, "gamma": 0.97,
           "gae_lambda": 0.9, "clip_range": 0.3, "ent_coef": 0.01,
           "vf_coef": 0.7, "max_grad_norm": 0.8, "init_log_std": -1.5,
           "value_warmup_steps": 11, "actor_ramp_steps": 12, "bc_coef": 3.0, "bc_decay_steps": 13,
           "normalize_reward": False}
    assert set(odd) == {f.name for f in dataclasses.fields(cfg.ppo)}, "give the new setting an odd value here"
    for key, value in odd.items():
        cfg = config_tree.apply(cfg, f"ppo.{key}", value)
    venv = DummyVecEnv([lambda: make_env(cfg.env)])
    demos = (np.zeros((4, 16), np.float32), np.zeros((4, 8), np.float32))
    model = build_model(cfg, venv, from_bc=True, bc_demos=demos)
    venv.close()
    schedules = {"learning_rate": model.lr_schedule, "clip_range": model.clip_range, "clip_range_vf": model.clip_range_vf}
    for key, value in odd.items():
        if key in schedules:
            assert schedules[key](1.0) == pytest.approx(value), key
        elif key == "init_log_std":
            assert float(model.policy.log_std.detach().mean()) == pytest.approx(value)
        elif key == "normalize_reward":                # a wrapper around the training envs
            from stable_baselines3.common.vec_env import VecNormalize
            for on in (False, True):
                envs = make_training_envs(config_tree.apply(cfg, "ppo.normalize_reward", on), Experiment(tmp_path), 0,
                                          restore=False)
                assert isinstance(envs, VecNormalize) == on
                envs.close()
        else:
            assert getattr(model, key) == value, key


# ---------------------------------------------------------------- removed settings
def _removed_settings():
    """(dotted key, Removed) for every removed setting in the config tree."""
    import dataclasses

    def walk(cls, path):
        for name, gone in getattr(cls, "REMOVED", {}).items():
            yield (f"{path}{name}", gone)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from walk(hints[f.name], f"{path}{f.name}.")
    import typing
    return list(walk(PipelineConfig, ""))


def test_a_removed_setting_names_why_and_its_old_default_still_loads():
    from pidog_env.config_tree import apply_text
    removed = dict(_removed_settings())
    assert len(removed) >= 44          # the four gail.* settings went as one group
    with pytest.raises(ConfigError) as exc:
        apply_text(PipelineConfig(), "off_policy.cql_alpha", "1.0")
    assert str(exc.value).startswith("off_policy.cql_alpha was removed: ") and "\n" not in str(exc.value)
    # a config.json written before the removal holds every removed setting at its old default: it loads
    old = PipelineConfig().to_dict()
    for key, gone in removed.items():
        node = old
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = list(gone.default) if isinstance(gone.default, tuple) else gone.default
    old["env"]["reward"]["scales"]["torso_clearance"] = 0.0
    assert config_tree.from_dict(PipelineConfig, old) == PipelineConfig(experiment_name=old["experiment_name"])
    old["env"]["reward"]["scales"]["torso_clearance"] = -1.0
    from pidog_env.config import EnvConfig
    with pytest.raises(ConfigError, match="reward.scales.torso_clearance was removed"):
        EnvConfig.from_dict(old["env"])


def test_every_removed_setting_is_in_the_changelog_with_its_reason():
    text = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text()
    for key, gone in _removed_settings():
        assert f"`{key}`" in text, key


def test_every_setting_has_help_and_numbers_have_bounds():
    import dataclasses
    import typing

    def walk(cls, path=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from walk(hints[f.name], f"{path}{f.name}.")
            else:
                yield f"{path}{f.name}", hints[f.name], f.metadata
    leaves = list(walk(PipelineConfig))
    # The compact core's 109, plus the teacher -> student recipe's three (env.obs.episode_physics,
    # distill.history, distill.steps); its other numbers are constants in training.distill.
    assert len(leaves) <= 112
    for key, hint, meta in leaves:
        assert meta.get("help"), f"{key} has no help"
        numeric = hint in (int, float) or (typing.get_origin(hint) is not dict
                                           and any(a in (int, float) for a in typing.get_args(hint)))
        if numeric:
            assert any(r in meta for r in ("ge", "gt", "le", "lt", "choices")), f"{key} has no bounds"
