"""The benchmark scripts' parts and options (every script end to end at a tiny budget, its figures checked
for plausibility: tests/test_bench_smoke.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(name, *args, results):
    env = {**os.environ, "MUJOCO_GL": "egl", "PIDOG_BENCH_RESULTS": str(results)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / name), *args], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_sample_efficiency_runs_its_protocol_from_presets(tmp_path):
    algos = ["sac_rlpd_interventions", "sac_scratch"]          # the PPO algorithms: test_bench_smoke.py
    # The smallest SAC budget the script takes (1000 steps), 400 of them with updates.
    run_script("sample_efficiency.py", "--quick", "--budget", "1024", "--eval-freq", "512", "--eval-episodes", "1",
               "--set", "env.episode_seconds=2", "--set", "demo.n_episodes=2", "--set", "bc.epochs=2",
               "--set", "ppo.n_steps=256", "--set", "ppo.batch_size=256", "--algos", *algos,
               "--sac-budget", "1000", "--sac-eval-freq", "500", "--set", "off_policy.learning_starts=600",
               "--set", "off_policy.warm_start_updates=20", "--set", "off_policy.critic_warmup_steps=200",
               results=tmp_path)
    data = json.loads((tmp_path / "sample_efficiency.json").read_text())
    assert data["preset"] == "sample_efficiency_quick" and data["budget_steps"] == 1024
    assert data["settings"]["bc.epochs"] == "2"
    assert set(data["algorithms"]) == set(algos) and data["sac_budget_steps"] == 1000
    for name, a in data["algorithms"].items():
        assert {"steps_to_target_median", "final_speed_mps", "final_fall_rate", "min_return_ratio_after_10k",
                "intervention_rate_first20", "intervention_rate_last20"} <= set(a), name
        assert 0 <= a["final_fall_rate"] <= 1 and a["budget_steps"] == (1000 if name.startswith("sac") else 1024)
    interventions = data["algorithms"]["sac_rlpd_interventions"]
    assert interventions["intervention_rate_first20"] is not None and interventions["intervention_rate_last20"] is not None
    assert data["algorithms"]["sac_scratch"]["intervention_rate_first20"] is None
    histories = json.loads((tmp_path / "sample_efficiency_histories.json").read_text())
    assert set(histories) == set(algos) and all(len(h[0]) >= 2 for h in histories.values())
    assert (tmp_path / "sample_efficiency.png").is_file()


def test_the_command_lines_settings_override_an_algorithms_own_but_not_the_protocols():
    from bench.sample_efficiency import ALGOS, run_settings
    from training.presets import build_config
    common = {"workdir": "w", "preset": "sample_efficiency_budget_quick",
              "typed": [("off_policy.demo_ratio", "0.25"), ("rl.total_timesteps", "5")]}
    protocol = [("skip_bc", "true"), ("rl.total_timesteps", "30000"), ("pretrained_model", "bc.pth")]
    cfg = build_config([], run_settings(common, "sac_rlpd_seed3", 3, protocol, ALGOS["sac_rlpd_interventions"]))
    assert cfg.rl.algo == "sac" and cfg.off_policy.intervention == "expert"           # the algorithm's own
    assert cfg.off_policy.demo_ratio == 0.25                                           # --set wins over ALGOS
    assert cfg.rl.total_timesteps == 30000 and cfg.seed == 3 and cfg.output_dir == "w"  # the protocol wins
    assert build_config([], run_settings({**common, "typed": []}, "x", 0, protocol,
                                         ALGOS["sac_rlpd"])).off_policy.demo_ratio == 0.5


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# A worker's task as the pipeline behaves: SIGTERM ends the run cleanly and the task returns.
GRACEFUL_TASK = ("import os, signal, time\n"
                 "def run(started):\n"
                 "    stop = []\n"
                 "    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))\n"
                 "    open(started, 'w').close()\n"
                 "    while not stop:\n"
                 "        time.sleep(0.05)\n"
                 "    return 1\n"
                 "def wait(started):\n"
                 "    open(started, 'w').close()\n"
                 "    time.sleep(120)\n")


@pytest.mark.slow                                   # processes end to end: a bench, its pool, SIGKILL
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("task", ["wait", "run"])
def test_a_killed_bench_takes_its_worker_processes_with_it(tmp_path, task):
    import signal
    import time
    (tmp_path / "graceful.py").write_text(GRACEFUL_TASK)
    started = tmp_path / "started"
    bench = ("import os, sys, time\n"
             f"sys.path.append({str(tmp_path)!r})\n"
             "import graceful\n"
             "from training.workers import worker_pool\n"
             "pool = worker_pool(1, grace_s=1.0)\n"
             "pid = pool.submit(os.getpid).result()\n"
             f"pool.submit(graceful.{task}, {str(started)!r})\n"
             f"while not os.path.exists({str(started)!r}):\n"
             "    time.sleep(0.05)\n"
             "print(pid, flush=True)\n"
             "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", bench], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        assert _alive(worker) and worker != proc.pid
        proc.send_signal(signal.SIGKILL)             # no handler, no clean shutdown of the pool
        proc.wait(10)
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        proc.kill()
