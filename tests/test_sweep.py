"""training/sweep.py: configurations, spec files, validation, real sweeps on the local backend (one that
survives a killed trial, each committed spec at the tests' budget) and, where Ray is installed, on Ray Tune."""

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from pidog_env.config_tree import ConfigError
from training.sweep import SweepSpec, aggregate, draw, main, parse_distribution, spec_file, spec_from_file, trials_of

ROOT = Path(__file__).resolve().parent.parent
SWEEP = [sys.executable, str(ROOT / "training" / "sweep.py")]
SPECS = sorted(p for p in (ROOT / "sweeps").iterdir() if p.suffix in (".toml", ".json"))
SMOKE = ["--preset", "tiny", "--set", "demo.n_envs=1", "--seeds", "0"]       # any spec at the tests' budget


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


def test_a_grid_of_strings_reaches_the_pipeline_as_the_strings():
    spec = SweepSpec("s", [0], base=[["@preset", "tiny"]], grid={"rl.vec_env": ["dummy", "subproc"]})
    commands = [t.command for t in trials_of(spec, Path("/nonexistent/trials"))]
    assert [c[-1] for c in commands] == ["rl.vec_env=dummy", "rl.vec_env=subproc"]


def test_toml_and_json_specs_describe_the_same_sweep(tmp_path):
    (tmp_path / "fast.json").write_text('{"rl.total_timesteps": 2048}')
    (tmp_path / "a.toml").write_text('''
seeds = [3, 4]
presets = ["tiny", "fast.json"]
num_samples = 2
[set]
rl.n_envs = 1
"env.reward.scales" = {fall = -50.0}
[grid]
ppo.learning_rate = [1e-4, 3e-4]
[sample]
ppo.gamma = "uniform(0.95, 0.99)"
''')
    (tmp_path / "b.json").write_text(json.dumps({
        "name": "a", "_about": "the same as a.toml", "seeds": [3, 4], "presets": ["tiny", "fast.json"],
        "set": {"rl": {"n_envs": 1}, "env.reward.scales.fall": -50.0},
        "grid": {"ppo.learning_rate": [1e-4, 3e-4]}, "sample": {"ppo": {"gamma": "uniform(0.95, 0.99)"}}, "num_samples": 2}))
    cli = argparse.Namespace(seeds=None, assignments=[("ppo.n_epochs", "3")])
    a, b = (spec_from_file(tmp_path / f, cli) for f in ("a.toml", "b.json"))
    assert a == b and a.name == "a" and a.seeds == [3, 4] and a.num_samples == 2
    assert a.base == [["@preset", "tiny"], ["@preset", str(tmp_path / "fast.json")], ["rl.n_envs", "1"],
                      ["env.reward.scales.fall", "-50.0"], ["ppo.n_epochs", "3"]]        # the command line last
    trials = trials_of(a, tmp_path / "trials")
    assert len(trials) == 2 * 2 * 2 and all(0.95 <= t.config["ppo.gamma"] <= 0.99 for t in trials)
    assert spec_from_file(tmp_path / "a.toml", argparse.Namespace(seeds=[7], assignments=None)).seeds == [7]
    assert spec_file("learning_rate") == ROOT / "sweeps" / "learning_rate.toml"


def run_main(capsys, *args):
    """training/sweep.py's main in this process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:                       # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("text, args, message", [
    (None, ["--spec", "no_such_spec"], "no spec 'no_such_spec'"),
    (None, ["--spec", "missing.toml"], "no such file"),
    (None, ["--spec", "."], "not a file"),
    ("seeds = [0]", ["--spec", "{dir}/s.yaml"], ".toml or .json"),
    ("seeds = [0", ["--spec", "{spec}"], "not valid TOML"),
    ("[1, 2]", ["--spec", "{dir}/s.json"], "wants a table"),
    ("gird = {a = [1]}", ["--spec", "{spec}"], "did you mean 'grid'"),
    ("grid = {ppo.learning_rate = 1e-4}", ["--spec", "{spec}"], "grid ppo.learning_rate: wants a non-empty list"),
    ("seeds = [0, 0.5]", ["--spec", "{spec}"], "seeds wants a list of integers"),
    ("seeds = [1, 1]", ["--spec", "{spec}"], "distinct"),
    ("name = '../up'", ["--spec", "{spec}"], "folder name"),
    ("grid = {ppo.no_such_setting = [1, 2]}", ["--spec", "{spec}"], "no_such_setting"),
    ("grid = {ppo.learning_rate = [1e-4, -1]}", ["--spec", "{spec}"], "ppo.learning_rate"),
    ("set = {rl.total_timesteps = 1979-05-27}", ["--spec", "{spec}"], "not a value a setting takes"),
    ("sample = {ppo.gamma = 'normal(0.9, 0.1)'}", ["--spec", "{spec}"], "sample ppo.gamma: 'normal(0.9, 0.1)'"),
    ("num_samples = 3", ["--spec", "{spec}"], "num_samples needs at least one sample"),
    ("seeds = [0]", ["--spec", "{spec}", "--grid", "ppo.gamma=[0.9]"], "--grid with --spec"),
    ("seeds = [0]", ["--spec", "{spec}", "--set", "ppo.gamma=2"], "ppo.gamma"),
    (None, ["--grid", "ppo.learning_rate=[1e-4, -1]"], "ppo.learning_rate"),
    (None, ["--grid", "ppo.gamma=0.99"], "JSON list"),
    (None, ["--sample", "ppo.gamma=normal(0.9, 0.1)"], "uniform"),
    (None, ["--seeds", "1", "1"], "distinct"),
    (None, ["--name", "../up"], "folder name"),
    (None, ["--sample", "ppo.gamma=uniform(0.9, 0.99)", "--sample-seed", "-1"], "sample-seed"),
    (None, ["--quick", "--workers", "0"], "--workers"),
    (None, ["--quick", "--cpus-per-trial", "2"], "--backend ray"),
    (None, ["--quick", "--backend", "local", "--address", "auto"], "--backend ray"),
    (None, ["--quick", "--backend", "dask"], "invalid choice"),
])
def test_bad_sweeps_and_specs_fail_in_one_line_before_anything_is_created(tmp_path, monkeypatch, capsys, text, args,
                                                                            message):
    spec = tmp_path / "spec.toml"
    if text is not None:
        (tmp_path / Path(args[1].format(dir=tmp_path, spec=spec)).name).write_text(text)
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    code, _, err = run_main(capsys, "--output-dir", tmp_path / "out",
                            *(a.format(dir=tmp_path, spec=spec) for a in args))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == before                    # nothing created, out/ included


@pytest.mark.parametrize("args", [["--backend", "ray"], ["--address", "auto"]])
def test_ray_asked_for_but_not_installed_says_how_to_install_it(tmp_path, monkeypatch, capsys, args):
    monkeypatch.setitem(sys.modules, "ray", None)                   # `import ray` fails, installed or not
    code, _, err = run_main(capsys, "--quick", "--output-dir", tmp_path / "out", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "./install.sh --with-ray" in lines[0], err
    assert "requirements-sweep.txt" in lines[0] and not (tmp_path / "out").exists()


def test_a_ray_cluster_that_does_not_answer_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    ray, tune = types.ModuleType("ray"), types.ModuleType("ray.tune")
    ray.tune = tune

    def init(**kwargs):
        assert kwargs["address"] == "auto"
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")
    ray.init, ray.shutdown = init, lambda: pytest.fail("shut down a Ray that never started")
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setitem(sys.modules, "ray.tune", tune)
    code, _, err = run_main(capsys, "--quick", "--address", "auto", "--output-dir", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2 and lines == ["error: cannot reach the Ray cluster at --address auto: Could not find any "
                                   "running Ray instance."], err
    assert not (tmp_path / "out").exists()


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


def start_sweep(*args):
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*SWEEP, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)


def wait_until_started(proc, trial_dir, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and not (trial_dir / "config.json").is_file():   # the pipeline runs for real
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)


@pytest.fixture(scope="module")
def killed_quick_sweep(tmp_path_factory):
    """`--quick --seeds 0 --workers 2` on the local backend, trial c1_s0 SIGKILLed once it runs (c0_s0, the
    learning rate 3e-4, runs to the end): the sweep folder, exit code, stdout, stderr and results.json as the
    sweep left it. The killed-trial test resumes it; the Ray test compares its c0_s0 with Ray's."""
    out = tmp_path_factory.mktemp("sweeps")
    proc = start_sweep("--quick", "--seeds", "0", "--workers", "2", "--output-dir", out)
    root = out / "quick"
    wait_until_started(proc, root / "trials" / "c1_s0")
    os.kill(int((root / "logs" / "c1_s0.pid").read_text()), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    results = (root / "results.json").read_text() if (root / "results.json").is_file() else "[]"
    return root, proc.returncode, stdout, stderr, {e["trial"]: e for e in json.loads(results)}


@pytest.mark.slow
def test_quick_sweep_reports_a_killed_trial_and_resume_runs_only_that_one(killed_quick_sweep):
    root, returncode, stdout, stderr, results = killed_quick_sweep
    out = root.parent
    assert returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert set(results) == {"c0_s0", "c1_s0"}
    assert results["c1_s0"]["status"] == "failed" and "SIGKILL" in results["c1_s0"]["error"]
    e = results["c0_s0"]
    assert e["status"] == "ok" and 0 <= e["final_fall_rate"] <= 1 and e["history"], e
    assert isinstance(e["final_speed_mps"], float) and (root / "trials" / "c0_s0" / "summary.json").is_file()
    assert e["config"] == {"ppo.learning_rate": 3e-4} and results["c1_s0"]["config"] == {"ppo.learning_rate": 1e-4}
    table = (root / "table.md").read_text()
    assert "| c0 | ppo.learning_rate=0.0003 | 1/1 |" in table and "| c1 | ppo.learning_rate=0.0001 | 0/1 |" in table
    assert (root / "curves.png").stat().st_size > 10_000 and "c1_s0" in stdout and "--resume" in stdout
    assert "on 2 local worker(s)" in stdout and not (root / "ray").exists()

    kept = (root / "trials" / "c0_s0" / "summary.json").stat().st_mtime_ns
    again = sweep("--resume", "--name", "quick", "--output-dir", out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 finished earlier, running 1 on 1 local worker(s)" in again.stdout
    results = {e["trial"]: e for e in json.loads((root / "results.json").read_text())}
    assert all(e["status"] == "ok" for e in results.values())
    assert (root / "trials" / "c0_s0" / "summary.json").stat().st_mtime_ns == kept
    assert "| c1 | ppo.learning_rate=0.0001 | 1/1 |" in (root / "table.md").read_text()
    assert sweep("--quick", "--output-dir", out, timeout=60).returncode == 2         # never overwritten


@pytest.mark.slow
def test_ctrl_c_stops_the_running_trials_and_says_how_to_continue(tmp_path):
    proc = start_sweep("--quick", "--seeds", "0", "1", "--grid", "ppo.learning_rate=[3e-4]", "--workers", "1",
                       "--set", "rl.total_timesteps=100000", "--output-dir", tmp_path)
    root = tmp_path / "quick"
    wait_until_started(proc, root / "trials" / "c0_s0")
    pipeline = int((root / "logs" / "c0_s0.pid").read_text())
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("stopped by SIGINT during sweep quick: 0 of 2 trials finished")
    assert "--resume --name quick" in stderr and "Traceback" not in stderr
    results = {e["trial"]: e for e in json.loads((root / "results.json").read_text())}
    assert results["c0_s0"]["status"] == "stopped" and "SIGTERM" in results["c0_s0"]["error"]
    assert results["c0_s1"]["status"] == "not run" and not (root / "trials" / "c0_s1").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pipeline, 0)                                            # the pipeline did not outlive the sweep


def finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_each_committed_spec_runs_end_to_end_at_the_tests_budget(tmp_path, path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = sweep("--spec", path, *SMOKE, "--workers", "3", "--output-dir", tmp_path / "out", cwd=cwd)   # all at once
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    spec = spec_from_file(path, argparse.Namespace(seeds=[0], assignments=[("@preset", "tiny"), ("demo.n_envs", "1")]))
    configs = spec.configurations()
    root = tmp_path / "out" / spec.name
    assert sorted(os.listdir(root)) == ["curves.png", "logs", "results.json", "sweep.json", "table.json", "table.md",
                                        "trials"]
    assert os.listdir(cwd) == []                                        # everything under --output-dir
    saved = json.loads((root / "sweep.json").read_text())
    assert saved["spec"]["base"][-2:] == [["@preset", "tiny"], ["demo.n_envs", "1"]] and saved["spec"]["seeds"] == [0]
    assert list(saved["configurations"].values()) == configs
    results = json.loads((root / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert [e["config"] for e in results] == configs and all(e["seed"] == 0 for e in results)
    for e in results:
        assert e["status"] == "ok" and e["error"] is None, e
        assert finite(e["final_speed_mps"]) and 0 <= e["final_fall_rate"] <= 1 and e["target_speed_mps"] > 0
        assert e["timesteps"] == 1024 and e["history"] and all(finite(h["mean_forward_speed"]) for h in e["history"])
        assert Path(e["shipped_model"]).is_file() and Path(e["experiment"]).parent == root / "trials"
        trial_cfg = json.loads((Path(e["experiment"]) / "config.json").read_text())["config"]
        for key, value in e["config"].items():                      # the swept value reached the pipeline
            group, name = key.rsplit(".", 1)
            node = trial_cfg
            for part in group.split("."):
                node = node[part]
            assert node[name] == pytest.approx(value)
    table = json.loads((root / "table.json").read_text())
    assert [r["config"] for r in table] == configs and all(r["seeds_ok"] == r["seeds"] == 1 for r in table)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is an optional extra (./install.sh --with-ray)")
def test_ray_backend_gives_the_local_backend_figures(tmp_path, killed_quick_sweep):
    """Trial c0_s0 (--quick, learning rate 3e-4, seed 0) on Ray against the same trial of the local sweep."""
    proc = sweep("--quick", "--seeds", "0", "--grid", "ppo.learning_rate=[3e-4]", "--backend", "ray",
                 "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [ray] = json.loads((tmp_path / "quick" / "results.json").read_text())
    local_root, _, _, _, local_results = killed_quick_sweep
    local = local_results["c0_s0"]
    assert ray["trial"] == "c0_s0" and ray["config"] == local["config"] == {"ppo.learning_rate": 3e-4}
    assert ray["status"] == local["status"] == "ok"
    for key in ("final_speed_mps", "final_fall_rate", "target_speed_mps", "timesteps", "history"):
        assert ray[key] == local[key], key                           # the pipeline is seeded: the same run
    assert (tmp_path / "quick" / "ray").is_dir() and not (local_root / "ray").exists()
