"""training/sweep.py: configurations, validation, and a real Ray Tune sweep that survives a killed trial."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pidog_env.config_tree import ConfigError
from training.sweep import SweepSpec, aggregate, draw, parse_distribution, trials_of

ROOT = Path(__file__).resolve().parent.parent
SWEEP = [sys.executable, str(ROOT / "training" / "sweep.py")]


def sweep(*args, timeout=600, **kw):
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*SWEEP, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, **kw)


def test_grid_times_samples_times_seeds_and_the_draws_are_seeded(tmp_path):
    spec = SweepSpec("s", [0, 1, 2], grid={"ppo.gamma": [0.98, 0.99]},
                     sample={"ppo.learning_rate": "loguniform(1e-5, 1e-3)", "ppo.n_epochs": "randint(2, 4)"},
                     num_samples=3, sample_seed=7)
    configs = spec.configurations()
    assert len(configs) == 6 and configs == spec.configurations()              # reproducible
    assert {c["ppo.gamma"] for c in configs} == {0.98, 0.99}
    assert all(1e-5 <= c["ppo.learning_rate"] <= 1e-3 and c["ppo.n_epochs"] in (2, 3, 4) for c in configs)
    other = SweepSpec("s", [0], sample=spec.sample, num_samples=3, sample_seed=8).configurations()
    assert [c["ppo.learning_rate"] for c in other] != [c["ppo.learning_rate"] for c in configs[:3]]
    trials = trials_of(spec, tmp_path / "trials")
    assert [t.name for t in trials[:4]] == ["c0_s0", "c0_s1", "c0_s2", "c1_s0"] and len(trials) == 18
    cmd = trials[1].command
    assert cmd[cmd.index("--seed") + 1] == "1" and f"ppo.gamma={configs[0]['ppo.gamma']}" in cmd
    assert not (tmp_path / "trials").exists()                                   # validating creates nothing


def test_distributions_are_checked():
    rng = np.random.default_rng(0)
    assert draw("choice([64, 128])", rng) in (64, 128)
    assert 0.1 <= draw("uniform(0.1, 0.2)", rng) <= 0.2
    for bad in ("normal(0, 1)", "uniform(1, 0)", "loguniform(0, 1)", "randint(0.5, 2)", "choice(3)", "uniform(1)"):
        with pytest.raises(ConfigError):
            parse_distribution(bad)


def test_aggregate_counts_failed_seeds_and_unreached_targets():
    spec = SweepSpec("s", [0, 1, 2], grid={"ppo.gamma": [0.99]})
    entries = [{"config_id": "c0", "status": "ok", "final_speed_mps": 0.1, "final_fall_rate": 0.0, "steps_to_target": 100},
               {"config_id": "c0", "status": "ok", "final_speed_mps": 0.2, "final_fall_rate": 0.1, "steps_to_target": None},
               {"config_id": "c0", "status": "failed"}]
    (row,) = aggregate(entries, spec)
    assert row["seeds_ok"] == 2 and row["seeds"] == 3 and row["reached_target"] == 1
    assert row["final_speed_mps"] == pytest.approx([0.15, 0.05]) and row["steps_to_target"] == [100.0, 0.0]


@pytest.mark.parametrize("args, message", [
    (["--grid", "ppo.learning_rate=[1e-4, -1]"], "ppo.learning_rate"),
    (["--grid", "ppo.no_such_setting=[1, 2]"], "no_such_setting"),
    (["--grid", "ppo.gamma=0.99"], "JSON list"),
    (["--sample", "ppo.gamma=normal(0.9, 0.1)"], "uniform"),
    (["--seeds", "1", "1"], "distinct"),
    (["--name", "../up"], "folder name"),
    (["--sample", "ppo.gamma=uniform(0.9, 0.99)", "--sample-seed", "-1"], "sample-seed"),
])
@pytest.mark.slow
def test_bad_sweeps_fail_in_one_line_before_anything_is_created(tmp_path, args, message):
    proc = sweep("--output-dir", tmp_path / "out", *args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_quick_sweep_reports_a_killed_trial_and_resume_runs_only_that_one(tmp_path):
    out = tmp_path / "sweeps"
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*SWEEP, "--quick", "--output-dir", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, stdin=subprocess.DEVNULL)
    root = out / "quick"
    victim = root / "trials" / "c1_s1"
    deadline = time.time() + 300
    while time.time() < deadline and not (victim / "config.json").is_file():        # it has started for real
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    os.kill(int((root / "logs" / "c1_s1.pid").read_text()), signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:]
    results = {e["trial"]: e for e in json.loads((root / "results.json").read_text())}
    assert set(results) == {"c0_s0", "c0_s1", "c1_s0", "c1_s1"}
    assert results["c1_s1"]["status"] == "failed" and "SIGKILL" in results["c1_s1"]["error"]
    for name in ("c0_s0", "c0_s1", "c1_s0"):
        e = results[name]
        assert e["status"] == "ok" and 0 <= e["final_fall_rate"] <= 1 and e["history"], e
        assert isinstance(e["final_speed_mps"], float) and (root / "trials" / name / "summary.json").is_file()
    assert results["c0_s0"]["config"] == {"ppo.learning_rate": 3e-4} and results["c1_s0"]["seed"] == 0
    table = (root / "table.md").read_text()
    assert "| c0 | ppo.learning_rate=0.0003 | 2/2 |" in table and "| c1 | ppo.learning_rate=0.0001 | 1/2 |" in table
    assert (root / "curves.png").stat().st_size > 10_000 and "c1_s1" in stdout and "--resume" in stdout

    kept = {n: (root / "trials" / n / "summary.json").stat().st_mtime_ns for n in ("c0_s0", "c0_s1", "c1_s0")}
    again = sweep("--resume", "--name", "quick", "--output-dir", out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "3 finished earlier, running 1" in again.stdout
    results = {e["trial"]: e for e in json.loads((root / "results.json").read_text())}
    assert all(e["status"] == "ok" for e in results.values())
    assert {n: (root / "trials" / n / "summary.json").stat().st_mtime_ns for n in kept} == kept
    assert "| c1 | ppo.learning_rate=0.0001 | 2/2 |" in (root / "table.md").read_text()
    assert sweep("--quick", "--output-dir", out, timeout=60).returncode == 2         # never overwritten
