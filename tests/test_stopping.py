"""Every stop path ends the same way: SIGINT or SIGTERM, to the main process or to its whole process
group, during BC or PPO -> exit 130/143, one line saying what is saved and how to continue, no
traceback; then --resume finishes at the saved budget with a continuous evaluation history.

The four stage x signal x target cases share one run: it is stopped, resumed, stopped again, ... (so a
resumed run stops the same way and resumes again), and the last --resume runs it to the end."""

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
# BC long enough to be stopped (1000 epochs); PPO with 4096 steps, an evaluation every 1024, no periodic checkpoint.
LONG = ["--set", "bc.epochs=1000", "--total-rl-timesteps", "4096", "--set", "rl.eval_freq=1024",
        "--set", "rl.checkpoint_freq=100000"]
# (stage, the line to wait for and how many times it must be printed, signal, to whom): each signal and each
# target in each stage. During BC the signal comes a second after BC starts; during PPO right after the
# second evaluation of the run (the first is at its start), i.e. after 1024 steps of learning in that run,
# however fast the machine is.
STOPS = [("bc", "behavior cloning:", 1, signal.SIGINT, "group"), ("bc", "behavior cloning:", 1, signal.SIGTERM, "main"),
         ("ppo", "eval @ ", 2, signal.SIGTERM, "group"), ("ppo", "eval @ ", 2, signal.SIGINT, "main")]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start(tmp_path: Path, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """The pipeline on experiment tmp_path/run, its output in tmp_path/<name>.log."""
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_pretrain_finetune.py"), "--output-dir", str(tmp_path),
                             "--experiment-name", "run", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=ENV, start_new_session=True, stdin=subprocess.DEVNULL)
    return proc, log


def wait_for(log: Path, text: str, proc: subprocess.Popen, times: int = 1, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while log.read_text().count(text) < times:
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


def stop(proc: subprocess.Popen, log: Path, marker: str, times: int, sig: signal.Signals, target: str,
         delay: float) -> str:
    """Send `sig` to the main process or its group `delay` seconds after `marker` is printed for the `times`th
    time; check the exit and that no process of the run survives; return the last line printed."""
    wait_for(log, marker, proc, times)
    time.sleep(delay)
    if target == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    assert proc.wait(timeout=120) == 128 + sig
    out = log.read_text()
    assert "Traceback" not in out and "Error" not in out, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {signal.Signals(sig).name} during ") and "continue with" in last and "--resume" in last
    assert live_processes_in_group(proc.pid) == []             # no worker outlives the run
    return last


def finish(tmp_path: Path, name: str) -> tuple[Path, list[dict], dict]:
    """--resume to the end; the budget is the saved one and the evaluation history has no hole.
    Returns the experiment folder, its evaluation history and summary."""
    proc, log = start(tmp_path, name, ["--resume"])
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    exp = tmp_path / "run"
    config = json.loads((exp / "config.json").read_text())["config"]
    budget, eval_freq = config["rl"]["total_timesteps"], config["rl"]["eval_freq"]
    summary = json.loads((exp / "summary.json").read_text())
    assert budget <= summary["ppo"]["timesteps"] < budget + 2 * 256 * 2          # the saved budget, not 500k
    history = json.loads((exp / "evaluations.json").read_text())
    steps = [h["timesteps"] for h in history]
    assert steps == sorted(set(steps)) and steps[0] == 0
    gaps = [b - a for a, b in zip(steps, steps[1:] + [summary["ppo"]["timesteps"]])]
    assert max(gaps) <= eval_freq + 2 * 256, gaps                                # no hole in the history
    assert len([p for p in (exp / "tensorboard").iterdir() if p.is_dir()]) == 1
    assert (exp / "plots" / "training_curves.png").is_file()
    return exp, history, summary


@pytest.mark.slow
def test_stops_during_bc_and_ppo_then_resume(tmp_path):
    """Each stop during PPO saves a checkpoint at its step and keeps the evaluation history and training
    episodes up to it; the run resumed to the end keeps them all."""
    exp = tmp_path / "run"
    ppo_stops = []                                         # (step, evaluations, training episodes) at each stop
    for n, (stage, marker, times, sig, target) in enumerate(STOPS):
        proc, log = start(tmp_path, "run", [*BASE, *LONG]) if n == 0 else start(tmp_path, f"resume{n}", ["--resume"])
        last = stop(proc, log, marker, times, sig, target, delay=1.0 if stage == "bc" else 0.0)
        if stage == "bc":
            assert "during behavior cloning: demonstrations.npz is saved" in last
            assert (exp / "demonstrations.npz").is_file() and not (exp / "bc_pretrained_policy.pth").exists()
            assert not (exp / "evaluations.json").exists()
            continue
        ckpts = sorted((int(p.stem.split("_")[1]), p) for p in (exp / "checkpoints").glob("ppo_*_steps.zip"))
        stopped_at, path = ckpts[-1]
        assert str(path) in last and stopped_at > max([s[0] for s in ppo_stops], default=0) + 1000    # it learned
        assert {s for s, _ in ckpts} == {stopped_at, *(s[0] for s in ppo_stops)}    # only the stops' checkpoints
        before = json.loads((exp / "evaluations.json").read_text())
        assert before and before[0]["timesteps"] == 0
        episodes = json.loads((exp / "training_episodes.json").read_text())
        ppo_stops.append((stopped_at, before, [e for e in episodes if e["timesteps"] <= stopped_at]))
    exp, history, _ = finish(tmp_path, f"resume{len(STOPS)}")
    episodes = json.loads((exp / "training_episodes.json").read_text())
    for _, before, kept in ppo_stops:
        assert history[:len(before)] == before                                  # the earlier history is kept
        assert episodes[:len(kept)] == kept and len(episodes) > len(kept)      # the dashboard's data too


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
