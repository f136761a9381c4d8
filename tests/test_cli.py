"""The one CLI layer: random values for every numeric setting end in exit 0 or a one-line exit 2 (never a
traceback, never a folder on exit 2); every documented script is a thin shim over it."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pidog_env import config_tree
from training import cli, pipeline, ppo_stage, presets
from training.config import PipelineConfig

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = PipelineConfig()
NUMERIC = [(k, type(v), None) for k, v, _ in config_tree.describe(DEFAULTS)
           if isinstance(v, (int, float)) and not isinstance(v, bool)]
NUMERIC += [(f"{k}.{name}", float, None) for k, v, _ in config_tree.describe(DEFAULTS) if isinstance(v, dict)
            for name in v]
NUMERIC += [(k, type(v[0]), len(v)) for k, v, _ in config_tree.describe(DEFAULTS)
            if isinstance(v, tuple) and v and isinstance(v[0], (int, float))]
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**7, 10**7),
                    st.sampled_from([0, 1, -1, 0.5, 2**31, 1e-9]))


def text_of(value) -> str:
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)                                  # nan, inf, -inf as a user would type them
    return json.dumps(value)


@pytest.fixture
def light_stages(monkeypatch):
    """Real CLI, validation and experiment creation; the heavy stages only build what they would train."""
    from pidog_env.env import action_space, observation_space
    from stable_baselines3.common.vec_env import DummyVecEnv
    from training.common import make_env
    from training.policies import make_policy

    def demos(cfg, exp):
        env = make_env(cfg.env)
        env.reset(seed=0)
        env.step(np.zeros(8, np.float32))
        env.close()
        return SimpleNamespace(summary=dict)

    def bc(cfg, exp, demo, pool=None):
        return make_policy(observation_space(cfg.env), action_space(cfg.env), cfg.policy), {}

    def ppo(cfg, exp, bc_state, demo, pool=None):
        venv = DummyVecEnv([lambda: make_env(cfg.env)])
        ppo_stage.build_model(cfg, venv, from_bc=bc_state is not None)
        venv.close()
        return {}

    monkeypatch.setattr(pipeline, "stage_demos", demos)
    monkeypatch.setattr(pipeline, "stage_bc", bc)
    monkeypatch.setattr(pipeline, "stage_ppo", ppo)


@pytest.mark.slow
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])   # examples: conftest
@given(setting=st.sampled_from(NUMERIC), data=st.data())
def test_random_numeric_settings_exit_0_or_a_one_line_2(tmp_path, capsys, light_stages, setting, data):
    key, kind, length = setting
    value = data.draw(st.lists(NUMBERS, min_size=length, max_size=length) if length else NUMBERS)
    name = f"e{next(COUNTER)}"
    rc = cli.main(["train", "--preset", "tiny", "--output-dir", str(tmp_path), "--experiment-name", name,
                   "--set", f"{key}={text_of(value)}"])
    err = capsys.readouterr().err
    assert rc in (0, 2), (key, value, rc)
    if rc == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert not (tmp_path / name).exists()
    else:
        saved = json.loads((tmp_path / name / "config.json").read_text())["config"]
        assert config_tree.get(config_tree.from_dict(PipelineConfig, saved), key) is not None


COUNTER = itertools.count()


def test_nothing_is_written_outside_the_output_dir(tmp_path, capsys):
    out = tmp_path / "out"
    for name in ("../escape", "/tmp/abs", "a/b", ".hidden", ""):
        assert cli.main(["train", "--output-dir", str(out), "--experiment-name", name]) == 2
    assert not out.exists() and not (tmp_path / "escape").exists()
    assert capsys.readouterr().err.count("error: ") == 5


@pytest.mark.parametrize("script,command", [("train_pretrain_finetune.py", "train"),
                                            ("training/train_imitation.py", "imitate"),
                                            ("training/train_rl.py", "rl"), ("training/evaluate.py", "evaluate"),
                                            ("training/visualize.py", "visualize")])
@pytest.mark.slow
def test_documented_scripts_are_shims_of_one_cli(script, command):
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}      # the package defaults it
    shim = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                          timeout=120, env=env)
    direct = subprocess.run([sys.executable, "-m", "training.cli", command, "--help"], capture_output=True,
                            text=True, timeout=120, env=env)
    assert shim.returncode == direct.returncode == 0, shim.stderr
    assert shim.stdout.startswith(f"usage: {Path(script).name} ")
    assert shim.stdout.split("\n\n", 1)[1] == direct.stdout.split("\n\n", 1)[1]   # same options and help
    code = (ROOT / script).read_text()
    assert "argparse" not in code and "sys.path" not in code


def test_off_policy_flags_of_pidog_rl_reach_their_settings():
    args = cli.build_parser().parse_args(["rl", "--algo", "sac", "--bc-coef", "2", "--bc-decay-steps", "7000",
                                          "--n-step", "5", "--intervention", "expert", "--intervention-penalty", "10"])
    cfg = presets.build_config(cli.PIPELINES["rl"][1], args.assignments)
    o = cfg.off_policy
    assert (o.bc_coef, o.bc_decay_steps, o.n_step, o.intervention, o.intervention_penalty) == (2.0, 7000, 5, "expert", 10.0)
    assert (cfg.ppo.bc_coef, cfg.ppo.bc_decay_steps) == (2.0, 7000)       # one flag for either algorithm's prior


def test_console_script_is_registered():
    import tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"pidog": "training.cli:main"}


def test_a_pretrained_policy_of_another_network_is_a_one_line_error(tmp_path, capsys):
    from pidog_env.config import EnvConfig
    from pidog_env.env import action_space, observation_space
    from training.config import PolicyConfig
    from training.policies import make_policy, policy_meta, save_policy
    env_cfg, pol_cfg = EnvConfig(), PolicyConfig()
    policy = make_policy(observation_space(env_cfg), action_space(env_cfg), pol_cfg, env_cfg=env_cfg)
    save_policy(tmp_path / "bc.pth", policy, policy_meta(policy, pol_cfg, env_cfg))
    out = tmp_path / "out"
    rc = cli.main(["train", "--preset", "tiny", "--skip-bc", "--pretrained-model", str(tmp_path / "bc.pth"),
                   "--output-dir", str(out), "--experiment-name", "x", "--set", "policy.net_arch=[32,32]"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "policy.net_arch [128, 128], this run [32, 32]" in err[0]
    assert not (out / "x").exists()


def test_evaluate_at_a_randomization_level(tmp_path, capsys):
    """`pidog evaluate --randomization-level`: level 0 (every range at its midpoint), 1 and 1.5 draw
    different robots; out of range or with --no-randomization: one line, exit 2."""
    def speeds(level: str, name: str) -> list[float]:
        out = tmp_path / name
        assert cli.main(["evaluate", "--gait", "trot", "--episodes", "2", "--set", "env.episode_seconds=1",
                         "--randomization-level", level, "--json", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["randomization_level"] == float(level)
        return [e["mean_forward_speed"] for e in result["per_episode"]]
    nominal, configured, wider = speeds("0", "l0.json"), speeds("1", "l1.json"), speeds("1.5", "l15.json")
    assert configured[0] != configured[1]                   # other robots per seed
    assert nominal != configured and wider != configured    # each level draws its own robots
    assert "randomization at level 1.5" in capsys.readouterr().out
    for bad in (["--randomization-level", "3.5"], ["--randomization-level", "x"],
                ["--randomization-level", "1", "--no-randomization"]):
        try:
            code = cli.main(["evaluate", "--gait", "trot", "--episodes", "1", *bad])
        except SystemExit as exc:                       # argparse's own exit for a bad value
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "randomization" in err[0] and "Traceback" not in err[0]
