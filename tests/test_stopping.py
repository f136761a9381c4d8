"""Every stop path ends the same way: SIGINT or SIGTERM, to the main process or to its whole process
group, during BC or PPO -> exit 130/143, one line saying what is saved and how to continue, no
traceback; then --resume finishes at the saved budget with a continuous evaluation history."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Subprocess env workers (they must outlive a group signal), short episodes, frequent evaluations.
BASE = ["--preset", "tiny", "--set", "rl.vec_env=subproc", "--set", "demo.n_episodes=4", "--no-live"]
STAGES = {
    "bc": (["--set", "bc.epochs=1000", "--total-rl-timesteps", "2048"], "behavior cloning:"),
    "ppo": (["--total-rl-timesteps", "8192", "--set", "rl.eval_freq=2048", "--set", "rl.checkpoint_freq=100000"],
            "PPO:"),
}
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start(tmp_path: Path, name: str, extra: list[str]) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_pretrain_finetune.py"), "--output-dir", str(tmp_path),
                             "--experiment-name", name, *BASE, *extra], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=ENV, start_new_session=True, stdin=subprocess.DEVNULL)
    return proc, log


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, f"{text!r} never appeared"
        time.sleep(0.2)


def live_processes_in_group(pgid: int, wait: float = 5.0) -> list[int]:
    """Pids of the group that still run (zombies waiting for a reaper do not count); reads /proc."""
    deadline = time.time() + wait
    while True:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("stage,sig,target", [   # in each stage, each signal and each target
    ("bc", signal.SIGINT, "group"), ("bc", signal.SIGTERM, "main"),
    ("ppo", signal.SIGTERM, "group"), ("ppo", signal.SIGINT, "main")])
def test_stop_then_resume(tmp_path, stage, sig, target):
    extra, marker = STAGES[stage]
    proc, log = start(tmp_path, "run", extra)
    wait_for(log, marker, proc)
    time.sleep(1.0)
    if target == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    assert proc.wait(timeout=120) == 128 + sig
    out = log.read_text()
    assert "Traceback" not in out and "Error" not in out, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {signal.Signals(sig).name} during ") and "continue with" in last and "--resume" in last
    exp = tmp_path / "run"
    if stage == "bc":
        assert "during behavior cloning: demonstrations.npz is saved" in last
        assert (exp / "demonstrations.npz").is_file() and not (exp / "bc_pretrained_policy.pth").exists()
        before = []
    else:
        ckpts = list((exp / "checkpoints").glob("ppo_*_steps.zip"))
        assert len(ckpts) == 1 and str(ckpts[0]) in last
        stopped_at = int(ckpts[0].stem.split("_")[1])
        before = json.loads((exp / "evaluations.json").read_text())
        assert before and before[0]["timesteps"] == 0
        episodes_before = json.loads((exp / "training_episodes.json").read_text())
    assert live_processes_in_group(proc.pid) == []             # no worker outlives the run

    resumed = subprocess.run([sys.executable, str(ROOT / "train_pretrain_finetune.py"), "--output-dir", str(tmp_path),
                              "--experiment-name", "run", "--resume"], capture_output=True, text=True, env=ENV,
                             timeout=600, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    budget = json.loads((exp / "config.json").read_text())["config"]["rl"]["total_timesteps"]
    summary = json.loads((exp / "summary.json").read_text())
    assert budget <= summary["ppo"]["timesteps"] < budget + 2 * 256 * 2          # the saved budget, not 500k
    history = json.loads((exp / "evaluations.json").read_text())
    steps = [h["timesteps"] for h in history]
    assert steps == sorted(set(steps)) and steps[0] == 0
    eval_freq = json.loads((exp / "config.json").read_text())["config"]["rl"]["eval_freq"]
    gaps = [b - a for a, b in zip(steps, steps[1:] + [summary["ppo"]["timesteps"]])]
    assert max(gaps) <= eval_freq + 2 * 256, gaps                                # no hole in the history
    assert history[:len(before)] == before                                      # the earlier history is kept
    assert len([p for p in (exp / "tensorboard").iterdir() if p.is_dir()]) == 1
    assert (exp / "plots" / "training_curves.png").is_file()
    if stage == "ppo":                                                          # the dashboard's data too
        episodes = json.loads((exp / "training_episodes.json").read_text())
        kept = [e for e in episodes_before if e["timesteps"] <= stopped_at]
        assert episodes[:len(kept)] == kept and len(episodes) > len(kept)


def test_first_signal_interrupts_or_flags_the_stage_and_a_second_exits_at_once(monkeypatch):
    from training.stopping import Interrupted, StopSignals
    stops = StopSignals()
    with pytest.raises(Interrupted) as exc:
        with stops.stage("behavior cloning", saved="demonstrations.npz is saved"):
            stops._handle(signal.SIGTERM, None)                 # as the signal module would call it
    assert (exc.value.exit_code, exc.value.stage, exc.value.saved) == (143, "behavior cloning",
                                                                      "demonstrations.npz is saved")
    assert exc.value.line().startswith("stopped by SIGTERM during behavior cloning: demonstrations.npz is saved")

    stops = StopSignals()
    with stops.stage("PPO", polled=True):
        stops._handle(signal.SIGINT, None)                      # polled: no exception, a flag
        assert stops.received == signal.SIGINT
    with pytest.raises(Interrupted):                            # a later stage does not start
        with stops.stage("the final evaluation"):
            pass
    exits = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    stops._handle(signal.SIGTERM, None)
    assert exits == [130]                                       # second signal: out at once, first signal's code


@pytest.mark.slow
def test_env_workers_ignore_stop_signals_until_the_main_process_closes_them():
    import numpy as np

    from pidog_env import config_tree
    from pidog_env.config import EnvConfig
    from training.common import make_vec_env
    venv = make_vec_env(config_tree.apply(EnvConfig(), "episode_seconds", 1.0), 2, seed=0, subprocess=True)
    venv.reset()
    for proc in venv.processes:
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    assert all(p.is_alive() for p in venv.processes)
    venv.step(np.zeros((2, 8), np.float32))                    # still serving the main process
    venv.close()
    assert not any(p.is_alive() for p in venv.processes)
