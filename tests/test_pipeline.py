"""The command line end to end: one-shot, staged, resume, interruption, and bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n-demo-episodes", "2", "--total-bc-epochs", "3", "--n-envs", "2", "--eval-episodes", "1",
        "--final-eval-episodes", "1", "--bc-eval-episodes", "1", "--value-warmup-steps", "1024",
        "--actor-ramp-steps", "1024", "--bc-decay-steps", "4096", "--visualize-freq", "0", "--no-live",
        "--set", "rl.confirm_episodes=2", "--set", "env.episode_seconds=2"]


def cli(*args, timeout=600, check=None):
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "train_pretrain_finetune.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if check is not None:
        assert proc.returncode == check, proc.stderr[-3000:]
    return proc


def one_line_error(proc):
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


@pytest.mark.slow
def test_one_shot_pipeline_writes_every_artifact(tmp_path):
    cli("--output-dir", tmp_path, "--experiment-name", "e2e", "--total-rl-timesteps", "2048",
        "--checkpoint-freq", "1024", "--eval-freq", "1024", *TINY, "--set", "rl.select_max_fall_rate=1", check=0)
    exp = tmp_path / "e2e"
    for name in ("config.json", "demonstrations.npz", "bc_pretrained_policy.pth", "final_model.zip",
                 "best_model.zip", "summary.json", "evaluations.json"):
        assert (exp / name).is_file(), name
    assert list((exp / "checkpoints").glob("ppo_*_steps.zip"))
    assert list((exp / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((exp / "bc_logs").glob("progress.csv"))
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["ppo"]["timesteps"] == 2048
    assert summary["ppo"]["selected"]["model"] == str(exp / "best_model.zip")      # the model to export ...
    assert summary["ppo"]["last"]["model"] == str(exp / "final_model.zip")         # ... beside the last one
    assert {"mean_forward_speed", "fall_rate"} <= set(summary["ppo"]["selected"]["final_eval"])
    confirmed = summary["ppo"]["selected"]["eval"]["confirmation"]       # the tiny preset: 1 + 2 episodes
    assert confirmed["episodes"] == 3 and 0 <= confirmed["fall_rate"] <= 1
    assert {"mean_forward_speed", "fall_rate", "train_seconds"} <= set(summary["bc"])
    config = json.loads((exp / "config.json").read_text())
    assert config["config"]["rl"]["total_timesteps"] == 2048 and "torch" in config["versions"]
    assert config["command"].startswith("train_pretrain_finetune.py --output-dir")
    # The evaluation CLI reads the result back without unpickling anything.
    out = subprocess.run([sys.executable, str(ROOT / "training" / "evaluate.py"), "--model", exp / "final_model.zip",
                          "--episodes", "1"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MUJOCO_GL": "egl"})
    assert out.returncode == 0 and "fall rate" in out.stdout, out.stderr


@pytest.mark.slow
def test_staged_run_then_resume_continues_the_step_count(tmp_path):
    cli("--output-dir", tmp_path, "--experiment-name", "bc", "--total-rl-timesteps", "0", *TINY, check=0)
    bc = tmp_path / "bc" / "bc_pretrained_policy.pth"
    assert bc.is_file() and not (tmp_path / "bc" / "final_model.zip").exists()
    cli("--output-dir", tmp_path, "--experiment-name", "rl", "--skip-bc", "--pretrained-model", bc,
        "--total-rl-timesteps", "1024", "--checkpoint-freq", "1024", "--eval-freq", "1024", *TINY, check=0)
    rl = tmp_path / "rl"
    first = json.loads((rl / "summary.json").read_text())
    assert first["ppo"]["timesteps"] == 1024 and first["pretrained_model"] == str(bc)
    cli("--output-dir", tmp_path, "--experiment-name", "rl", "--resume", "--total-rl-timesteps", "2048", *TINY,
        check=0)
    summary = json.loads((rl / "summary.json").read_text())
    assert summary["ppo"]["timesteps"] == 2048
    evals = json.loads((rl / "evaluations.json").read_text())
    steps = [e["timesteps"] for e in evals]
    assert steps == [0, 1024, 2048]                                             # history kept and extended
    runs = [p for p in (rl / "tensorboard").iterdir() if p.is_dir()]
    assert len(runs) == 1                                                       # logs continue in the same run


@pytest.mark.slow
def test_missing_pretrained_model_is_one_line_exit_2(tmp_path):
    msg = one_line_error(cli("--output-dir", tmp_path, "--skip-bc", "--pretrained-model", tmp_path / "nope.pth",
                             "--no-live"))
    assert msg.startswith("error: policy file not found")


@pytest.mark.slow
def test_existing_experiment_is_never_overwritten(tmp_path):
    exp = tmp_path / "taken"
    exp.mkdir()
    (exp / "final_model.zip").write_bytes(b"precious")
    msg = one_line_error(cli("--output-dir", tmp_path, "--experiment-name", "taken", "--no-live"))
    assert "already exists" in msg
    assert (exp / "final_model.zip").read_bytes() == b"precious"


@pytest.mark.parametrize("args", [["--n-envs", "0"], ["--total-rl-timesteps", "-5"], ["--pretrained-model", "x.pth"],
                                  ["--resume"], ["--bogus-flag"]])
@pytest.mark.slow
def test_invalid_flags_exit_2_with_a_usage_line(tmp_path, args):
    proc = cli("--output-dir", tmp_path, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error:" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_wrong_demo_source_file_is_reported(tmp_path):
    bogus = tmp_path / "model.zip"
    bogus.write_text("not a zip")
    msg = one_line_error(cli("--output-dir", tmp_path, "--demo-source", bogus, "--total-rl-timesteps", "0",
                             "--n-demo-episodes", "1", "--no-live"))
    assert "expected a .pth policy or an SB3 .zip" in msg
    assert not any(tmp_path.iterdir()) or list(tmp_path.iterdir()) == [bogus]   # no half-made experiment


def tiny(*args, check=0):
    return cli("--preset", "tiny", *args, check=check)


@pytest.fixture(scope="module")
def stopped_tiny_run(tmp_path_factory):
    """A tiny run on a non-default env (fall_tilt_deg 55), as if stopped at 512 steps: its 1024-step
    checkpoint removed. Trained once; each test resumes its own copy (copy_run)."""
    out = tmp_path_factory.mktemp("stopped")
    tiny("--output-dir", out, "--experiment-name", "r", "--set", "env.fall_tilt_deg=55")
    (out / "r" / "checkpoints" / "ppo_1024_steps.zip").unlink()
    return out / "r"


def copy_run(exp: Path, tmp_path: Path) -> Path:
    """The experiment folder copied to tmp_path/<same name> (the pipeline writes only inside its folder)."""
    return Path(shutil.copytree(exp, tmp_path / exp.name))


@pytest.mark.slow
def test_resume_keeps_the_saved_env_and_budget_and_records_what_changes(tmp_path, stopped_tiny_run):
    """Saved settings win over today's defaults (here: a non-default env); a typed budget is recorded."""
    exp = copy_run(stopped_tiny_run, tmp_path)
    assert not (exp / "checkpoints" / "ppo_1024_steps.zip").exists()      # as if stopped at 512 steps
    cli("--output-dir", tmp_path, "--experiment-name", "r", "--resume", check=0)
    assert json.loads((exp / "summary.json").read_text())["ppo"]["timesteps"] == 1024       # the saved budget
    from training.policies import read_zip_meta
    from pidog_env import config_tree
    from pidog_env.config import EnvConfig
    saved_env = config_tree.apply(EnvConfig(), "episode_seconds", 2.0)
    saved_env = config_tree.apply(saved_env, "fall_tilt_deg", 55.0)
    assert read_zip_meta(exp / "final_model.zip")["env_config_hash"] == saved_env.hash()
    cli("--output-dir", tmp_path, "--experiment-name", "r", "--resume", "--total-rl-timesteps", "2048", check=0)
    record = json.loads((exp / "config.json").read_text())
    assert record["config"]["rl"]["total_timesteps"] == 2048
    assert [(c["step"], c["settings"]) for c in record["changes"]] == \
        [(1024, {"rl.total_timesteps": {"from": 1024, "to": 2048}})]
    steps = [e["timesteps"] for e in json.loads((exp / "evaluations.json").read_text())]
    assert steps == [0, 512, 1024, 1536, 2048]
    msg = one_line_error(cli("--output-dir", tmp_path, "--experiment-name", "r", "--resume",
                             "--set", "env.fall_tilt_deg=50"))
    assert "cannot change env.fall_tilt_deg" in msg


@pytest.mark.slow
def test_resume_refuses_a_saved_config_that_no_longer_matches_the_checkpoint(tmp_path, stopped_tiny_run):
    exp = copy_run(stopped_tiny_run, tmp_path)
    record = json.loads((exp / "config.json").read_text())
    del record["config"]["env"]["fall_tilt_deg"]          # as written by a version without that setting
    (exp / "config.json").write_text(json.dumps(record))
    msg = one_line_error(cli("--output-dir", tmp_path, "--experiment-name", "r", "--resume"))
    assert "was trained on env config" in msg and "start a new experiment" in msg
    record["config"]["env"]["fall_tilt_deg"] = 55.0
    record["config"]["env"]["legacy_knob"] = 1            # a setting this version no longer has
    (exp / "config.json").write_text(json.dumps(record))
    msg = one_line_error(cli("--output-dir", tmp_path, "--experiment-name", "r", "--resume"))
    assert "unknown setting 'env.legacy_knob'" in msg
