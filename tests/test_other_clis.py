"""training/train_imitation.py (BC) and training/train_rl.py (SAC with an actor warm start) run."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "MUJOCO_GL": "egl"}


def start(script, *args) -> subprocess.Popen:
    target = [script] if script == "-m" else [str(ROOT / script)]        # a script, or -m MODULE ...
    return subprocess.Popen([sys.executable, *target, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, stdin=subprocess.DEVNULL)


def output(proc: subprocess.Popen) -> str:
    """What a started command printed, once it exited 0."""
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stderr[-2000:]
    return stdout


def run(script, *args):
    return output(start(script, *args))


@pytest.mark.slow
def test_standalone_bc_then_sac_from_it(tmp_path):
    few = ["--set", "bc.eval_episodes=2", "--set", "rl.final_eval_episodes=2", "--set", "env.episode_seconds=2",
           "--set", "rl.eval_episodes=2", "--set", "rl.confirm_episodes=2"]
    run("training/train_imitation.py", "--n-demo-episodes", "2", "--epochs", "5", "--output-dir", tmp_path,
        "--experiment-name", "bc", *few)
    bc = tmp_path / "bc"
    assert (bc / "bc_pretrained_policy.pth").is_file() and (bc / "demonstrations.npz").is_file()
    assert json.loads((bc / "summary.json").read_text())["bc"]["train_seconds"] > 0
    out = run("training/train_rl.py", "--algo", "sac", "--timesteps", "1200", "--pretrained-model",
              bc / "bc_pretrained_policy.pth", "--output-dir", tmp_path, "--experiment-name", "sac", *few,
              "--demo-ratio", "0.5", "--intervention", "expert")
    assert "actor warm-started from the BC policy" in out and "50% of every batch from" in out
    summary = json.loads((tmp_path / "sac" / "summary.json").read_text())["off_policy"]
    assert summary["ent_coef_final"] > 0                                                        # auto-tuned
    with zipfile.ZipFile(tmp_path / "sac" / "final_model.zip") as zf:
        weights = torch.load(io.BytesIO(zf.read("policy.pth")), weights_only=True)
    assert {k.split(".")[1] for k in weights if k.startswith("critic.qf")} == {"qf0", "qf1"}
    assert any(v.dim() == 1 and k.startswith("critic.qf") and k.endswith(".weight") for k, v in weights.items())
    assert summary["algo"] == "sac" and summary["timesteps"] == 1200
    drawn = summary["demo_rows_drawn"]                  # RLPD: half of every batch from the demonstrations
    assert drawn["demo"] == drawn["online"] > 0
    assert "expert interventions on" in out
    assert all(0 <= summary[k] <= 1 for k in ("intervention_rate_first20", "intervention_rate_last20"))
    windows = json.loads((tmp_path / "sac" / "interventions.json").read_text())   # a 20th of a short run: 100 steps
    assert [w["timesteps"] for w in windows] == list(range(100, 1201, 100))
    assert (tmp_path / "sac" / "plots" / "training_curves.png").is_file()       # with the intervention panel
    evals = json.loads((tmp_path / "sac" / "evaluations.json").read_text())     # periodic evaluations, as PPO's
    assert [e["timesteps"] for e in evals][:1] == [0] and "selected" in summary
    # Its zip loads safely (metadata inside, no pickle) in the evaluation CLI, which runs beside the export
    # (both only read the zip; it ends before the runtime's paced loop starts).
    evaluating = start("training/evaluate.py", "--model", tmp_path / "sac" / "final_model.zip", "--episodes", "1")
    # SAC exports (the tanh-squashed mean action, parity-checked) and runs in the robot runtime.
    out = run("-m", "training.cli", "export", "--model", tmp_path / "sac" / "final_model.zip", "--check-steps", "100")
    assert "max |diff|" in out and json.loads((tmp_path / "sac" / "export" / "policy.json").read_text())["obs_size"] == 16
    assert "fall rate" in output(evaluating)
    out = run("deploy/runtime.py", "--policy", tmp_path / "sac" / "export" / "policy.onnx", "--hardware", "sim",
              "--seconds", "0.5")
    assert "stopped: time limit reached" in out
