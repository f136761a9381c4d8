"""Every bench script end to end as a user runs it (`python bench/X.py ...`), at a tiny budget: it exits 0,
prints its figures, writes its JSON (PIDOG_BENCH_RESULTS points bench._common.RESULTS at tmp_path), and the
figures in it are finite and plausible (rates > 0, fall rates in [0, 1], counts equal to the budget asked,
derived figures consistent with the ones they come from). Timings themselves are not asserted: they depend on
the machine. Bad budget flags: a one-line error and exit 2, before any work."""

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("env_throughput", "ppo_throughput", "visualization_overhead", "deploy_latency", "trot_check",
           "sample_efficiency", "main_job", "actuator_check", "vendor_gaits", "sysid_roundtrip",
           "robust_recipe")


def run_script(name: str, *args: str, results: Path) -> str:
    env = {**os.environ, "MUJOCO_GL": "egl", "PIDOG_BENCH_RESULTS": str(results)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"-> {results}" in proc.stdout                          # it says where its figures went
    return proc.stdout


def _refuse(constant: str):
    raise ValueError(f"{constant} in a results file")


def load(path: Path) -> dict:
    """A results file as strict JSON (NaN or Infinity fail), every number in it finite."""
    data = json.loads(path.read_text(), parse_constant=_refuse)
    assert_finite(data, path.name)
    assert {"cpu_count", "platform", "python", "time"} <= set(data["machine"])
    return data


def assert_finite(value, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_finite(v, f"{where}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), where


def printed(out: str, data: dict) -> None:
    """write_result printed every top-level figure it wrote."""
    lines = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert set(data) - {"machine"} <= lines


TOOLS = ("publish", "report")      # python -m bench.publish / bench.report work on results (tests/test_results.py)


def test_every_bench_script_has_a_smoke_test():
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_")} - set(TOOLS)
    assert scripts <= set(SCRIPTS), sorted(scripts - set(SCRIPTS))


# ---------------------------------------------------------------- bad budgets: one line, exit 2, no work
BAD = [
    ("trot_check", ["--seeds", "0"], "--seeds"),
    ("actuator_check", ["--seconds", "0"], "--seconds"),
    ("actuator_check", ["--policy", "nolabel"], "--policy"),
    ("vendor_gaits", ["--episodes", "0"], "--episodes"),
    ("env_throughput", ["--seconds", "0"], "--seconds"),
    ("env_throughput", ["--rounds", "0"], "--rounds"),
    ("ppo_throughput", ["--n-envs", "1"], "--n-envs"),
    ("ppo_throughput", ["--seconds", "-1"], "--seconds"),
    ("ppo_throughput", ["--rounds", "0"], "--rounds"),
    ("ppo_throughput", ["--n-steps", "1"], "--n-steps"),
    ("visualization_overhead", ["--seconds", "0"], "--seconds"),
    ("visualization_overhead", ["--episode-seconds", "-2"], "--episode-seconds"),
    ("visualization_overhead", ["--n-steps", "0"], "--n-steps"),
    ("deploy_latency", ["--episodes", "0"], "--episodes"),
    ("deploy_latency", ["--seconds", "0"], "--seconds"),
    ("deploy_latency", ["--bc-demos", "0"], "--bc-demos"),
    ("deploy_latency", ["--bc-epochs", "0"], "--bc-epochs"),
    ("main_job", ["--seed", "-1"], "--seed"),
    ("main_job", ["--set", "rl.total_timesteps"], "--set"),
    ("main_job", ["--preset", "no_such_preset"], "no_such_preset"),
    ("main_job", ["--baseline-code", "/nonexistent"], "--baseline-code"),
    ("sample_efficiency", ["--workers", "0"], "--workers"),
    ("sample_efficiency", ["--seeds", "1", "1"], "--seeds"),
    ("sample_efficiency", ["--sac-budget", "10"], "--sac-budget"),
    ("sample_efficiency", ["--set", "ppo.n_steps"], "--set"),
    ("sample_efficiency", ["--budget", "1024", "--eval-episodes", "0"], "eval_episodes"),
    ("sysid_roundtrip", ["--repeats", "0"], "--repeats"),
    ("sysid_roundtrip", ["--max-evals", "5"], "--max-evals"),
    ("robust_recipe", ["--episodes", "0"], "--episodes"),
    ("robust_recipe", ["--seeds", "0", "0"], "--seeds"),
    ("robust_recipe", ["--budget", "no_such_preset"], "no_such_preset"),
]


@pytest.mark.parametrize("name,argv,says", BAD, ids=[f"{n}{' '.join(a)}" for n, a, _ in BAD])
def test_a_bad_budget_is_one_line_and_exit_2_before_any_work(name, argv, says, tmp_path, monkeypatch, capsys):
    import bench._common
    from training.cli import run_guarded
    module = importlib.import_module(f"bench.{name}")
    for mod in (bench._common, module):                      # should it run anyway, it writes here
        monkeypatch.setattr(mod, "RESULTS", tmp_path / "results", raising=False)
    if name in ("sample_efficiency", "robust_recipe"):
        argv = [*argv, "--workdir", str(tmp_path / "work")]
    try:
        code = run_guarded(lambda: module.main(argv))       # what `python bench/X.py` does with errors
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists()


# ---------------------------------------------------------------- the scripts, end to end
@pytest.mark.slow
def test_trot_check(tmp_path):
    out = run_script("trot_check", "--seeds", "2", results=tmp_path)
    data = load(tmp_path / "trot.json")
    printed(out, data)
    assert data["seeds"] == 2
    assert 0.05 < data["forward_speed_mps"] < 0.5 and 0.05 < data["randomized_mean_speed_mps"] < 0.5
    assert data["falls_of_10"] in (0, 5, 10)                  # 10 x falls / 2 episodes
    assert data["lateral_drift_ratio"] >= 0 and abs(data["heading_change_deg"]) < 180


@pytest.mark.slow
def test_actuator_check(tmp_path):
    out = run_script("actuator_check", "--seconds", "0.5", results=tmp_path)
    data = load(tmp_path / "actuator_check.json")
    printed(out, data)
    servo = data["servo"]
    assert servo["measured_stall_torque_nm"] == pytest.approx(servo["stall_torque_nm"], rel=0.05)
    assert servo["measured_no_load_speed_rad_s"] == pytest.approx(servo["no_load_speed_rad_s"], rel=0.05)
    assert set(data["gaits"]) == {"trot", "vendor_trot", "vendor_walk"}
    for gait in data["gaits"].values():
        assert gait["excess_power_w"] <= 0.01 and 0 < gait["peak_power_w"] <= servo["peak_power_w"] + 1e-3
        assert gait["samples_outside_envelope"] == 0
        assert gait["physics_steps"] <= 0.5 / 0.004 + 1
    assert data["passed"] and (tmp_path / "actuator_check.png").stat().st_size > 10_000


@pytest.mark.slow
def test_vendor_gaits(tmp_path):
    out = run_script("vendor_gaits", "--episodes", "1", "--seconds", "1", results=tmp_path)
    data = load(tmp_path / "vendor_gaits.json")
    printed(out, data)
    assert set(data["gaits"]) == {"trot", "walk"} and data["seconds"] == 1.0
    for gait in data["gaits"].values():
        assert gait["episodes"] == 1 and 0 <= gait["falls"] <= 1 and 0 <= gait["walked_forward"] <= 1
    assert data["run"]["episodes"] == 2


@pytest.mark.slow
def test_env_throughput(tmp_path):
    out = run_script("env_throughput", "--seconds", "0.4", "--rounds", "2", results=tmp_path)
    data = load(tmp_path / "env_throughput.json")
    printed(out, data)
    rates = ("pidog_steps_per_s", "physics_ceiling_steps_per_s", "ant_v5_steps_per_s", "camera_steps_per_s")
    assert all(data[k] > 10 for k in rates)
    assert data["pidog_vs_ant_ratio"] == pytest.approx(data["pidog_steps_per_s"] / data["ant_v5_steps_per_s"], rel=0.01)
    assert data["pidog_vs_ceiling_ratio"] == pytest.approx(
        data["pidog_steps_per_s"] / data["physics_ceiling_steps_per_s"], rel=0.01)
    assert data["rounds"] == 2 and data["seconds_per_figure"] >= 0.4 and data["frame_skip"] >= 1


@pytest.mark.slow
def test_ppo_throughput(tmp_path):
    out = run_script("ppo_throughput", "--n-envs", "2", "--seconds", "0.2", "--rounds", "1", "--n-steps", "64",
                     results=tmp_path)
    data = load(tmp_path / "ppo_throughput.json")
    printed(out, data)
    assert data["n_envs"] == 2 and data["rounds"] == 1 and data["n_steps_per_env"] == 64
    assert data["batch_size"] == 128                           # at most one rollout
    assert set(data["timed_steps"]) == {"batched", "subproc", "dummy"} == set(data["timed_seconds"])
    for kind, steps in data["timed_steps"].items():            # whole iterations after the warm-up, >= 1
        assert steps >= 128 and steps % 128 == 0 and data["timed_seconds"][kind] > 0, kind
    for kind, key in (("batched", "ppo_steps_per_s"), ("subproc", "ppo_steps_per_s_sb3_subproc"),
                      ("dummy", "ppo_steps_per_s_dummy_vec_env")):      # timed_seconds is rounded to 0.01 s
        seconds = data["timed_seconds"][kind]
        assert data[key] == pytest.approx(data["timed_steps"][kind] / seconds, rel=0.006 / seconds + 0.001), kind
    assert data["speedup_vs_sb3_subproc"] == pytest.approx(
        data["ppo_steps_per_s"] / data["ppo_steps_per_s_sb3_subproc"], rel=0.01)
    assert data["total_seconds"] >= sum(data["timed_seconds"].values())


@pytest.mark.slow
def test_visualization_overhead(tmp_path):
    from training.config import RLConfig
    out = run_script("visualization_overhead", "--seconds", "0.2", "--episode-seconds", "1", "--n-steps", "64",
                     results=tmp_path)
    data = load(tmp_path / "visualization_overhead.json")
    printed(out, data)
    rl = RLConfig()
    # (1) the pipeline's default PPO: its vec env and envs, at the rollout asked
    assert data["ppo_vec_env"] == rl.vec_env and data["ppo_n_envs"] == rl.n_envs and data["ppo_n_steps"] == 64
    assert data["ppo_steps_per_s"] > 0 and data["ppo_steps_per_s_while_rendering"] > 0
    assert data["visualize_freq"] == rl.visualize_freq
    between = data["seconds_between_visualizations"]
    assert between == pytest.approx(rl.visualize_freq / data["ppo_steps_per_s"], abs=0.1)
    # (2) the clip asked for, and the fractions are (2) / (1)
    assert data["episode_seconds"] == 1.0 and data["video_fps"] == pytest.approx(25.0)
    assert data["render_fraction"] == pytest.approx(data["visualization_seconds"] / between, rel=0.05, abs=2e-4)
    assert data["inprocess_render_fraction"] == pytest.approx(
        data["inprocess_visualization_seconds"] / between, rel=0.05, abs=2e-4)
    # (3) the background render took CPU time of its own, counted on top of what training waits for
    assert data["render_process_cpu_seconds"] > 0 and data["render_process_wall_seconds"] > 0
    assert data["render_cpu_fraction"] > data["render_fraction"] > 0
    assert data["inprocess_visualization_seconds"] > 0


@pytest.mark.slow
def test_deploy_latency(tmp_path):
    out = run_script("deploy_latency", "--seconds", "0.5", "--vendor-seconds", "0.5", "--episodes", "1",
                     "--bc-demos", "2", "--bc-epochs", "5", results=tmp_path)
    data = load(tmp_path / "deploy_latency.json")
    printed(out, data)
    positive = {"inference_p50_ms", "inference_p99_ms", "jitter_p99_ms", "tick_duration_p99_ms", "period_p99_ms",
                "vendor_fake_tick_duration_p99_ms", "vendor_fake_period_p99_ms",
                "vendor_fake_busy_thread_tick_duration_p99_ms", "vendor_fake_pidog_in_process_tick_duration_p99_ms",
                "sim_runtime_speed_ratio"}
    assert all(data[k] > 0 for k in positive), {k: data[k] for k in positive}
    assert data["inference_p50_ms"] <= data["inference_p99_ms"] < 100
    ticks = round(0.5 * data["control_hz"])                     # the seconds asked, at 50 Hz
    for prefix in ("", "vendor_fake_", "vendor_fake_pidog_in_process_"):
        assert abs(data[f"{prefix}ticks"] - ticks) <= 2, (prefix, data[f"{prefix}stopped"])
    # The stress case's busy thread runs at normal priority and holds the GIL: on a loaded machine its ticks
    # can run long enough for the runtime's timing watchdog to stop the loop early, as it would on the robot.
    # Then the watchdog says so and the ticks are those up to the stop; otherwise it ran the seconds asked.
    busy_ticks, busy_stop = data["vendor_fake_busy_thread_ticks"], data["vendor_fake_busy_thread_stopped"]
    if busy_stop == "time limit reached":
        assert abs(busy_ticks - ticks) <= 2, busy_ticks
    else:
        assert timing_watchdog_stop(busy_stop, busy_ticks, data["control_hz"]), (busy_stop, busy_ticks)
        assert busy_ticks < ticks - 2
    assert data["vendor_fake_threads"] == ["MainThread"]                   # the runtime starts no vendor thread
    assert "ultrasonic_thread" in data["vendor_fake_busy_thread_threads"]   # the stress case really had one
    assert data["walk_episodes"] == 1 and data["policy"].startswith("trot-BC (2 demos, 5 epochs)")
    assert abs(data["in_env_speed_mps"]) < 1 and abs(data["sim_runtime_speed_mps"]) < 1     # a tiny BC policy
    assert data["sim_runtime_speed_ratio"] == pytest.approx(
        data["sim_runtime_speed_mps"] / max(data["in_env_speed_mps"], data["in_env_ideal_imu_speed_mps"]), abs=0.01)


def timing_watchdog_stop(message: str, ticks: int, control_hz: float) -> bool:
    """Whether `message` is a stop by the runtime's timing watchdog that fits a loop stopped after `ticks`
    ticks: long ticks in a row (at least that many ticks ran), a hung tick, or a slow mean period (at least
    a window of periods ran)."""
    from deploy import runtime
    dt_ms = 1000 / control_hz
    long_ticks = f"ticks took over {runtime.LONG_TICK_FACTOR * dt_ms:.0f} ms {runtime.LONG_TICKS_IN_A_ROW} times in a row"
    hung = f"a tick was still running after {1000 * runtime.TICK_DEADLINE_S:.0f} ms"
    slow = "the loop runs at "
    return ((message.startswith(long_ticks) and ticks >= runtime.LONG_TICKS_IN_A_ROW) or message.startswith(hung)
            or (message.startswith(slow) and ticks >= runtime.SLOW_WINDOW))


def test_the_watchdog_check_takes_only_a_timing_stop_that_fits_its_tick_count():
    long_ticks = "ticks took over 16 ms 5 times in a row (last 26.5 ms)"      # as the runtime says it at 50 Hz
    assert timing_watchdog_stop(long_ticks, 5, 50.0) and not timing_watchdog_stop(long_ticks, 4, 50.0)
    assert timing_watchdog_stop("a tick was still running after 250 ms (a hung I2C bus?)", 3, 50.0)
    slow = "the loop runs at 38.7 Hz (mean period 25.8 ms over 25 ticks, limit 22 ms)"
    assert timing_watchdog_stop(slow, 25, 50.0) and not timing_watchdog_stop(slow, 24, 50.0)
    for other in ("time limit reached", "exception: RuntimeError: boom", "SIGINT received",
                  "servo writes failed on 3 ticks in a row (I2C)"):
        assert not timing_watchdog_stop(other, 7, 50.0), other


@pytest.fixture(scope="module")
def sample_efficiency_run(tmp_path_factory):
    """bench/sample_efficiency.py's default protocol (PPO from BC and from scratch) at the tests' budget. (Its
    SAC variants: tests/test_bench.py.)"""
    results = tmp_path_factory.mktemp("results")
    out = run_script("sample_efficiency", "--quick", "--budget", "1024", "--eval-freq", "512", "--eval-episodes", "1",
                     "--set", "env.episode_seconds=2", "--set", "demo.n_episodes=2", "--set", "bc.epochs=2",
                     "--set", "bc.eval_episodes=1", "--set", "ppo.n_steps=256", "--set", "ppo.batch_size=256",
                     results=results)
    return results, out


@pytest.mark.slow
def test_sample_efficiency(sample_efficiency_run):
    results, out = sample_efficiency_run
    data = load(results / "sample_efficiency.json")
    printed(out, data)
    assert data["preset"] == "sample_efficiency_quick" and data["budget_steps"] == 1024 and data["seeds"] == [0]
    assert set(data["steps_to_target"]) == {"bc_init", "scratch"} and data["settings"]["bc.epochs"] == "2"
    assert set(data["algorithms"]) == {"ppo_handoff", "ppo_scratch"} and data["sac_budget_steps"] is None
    for name, a in data["algorithms"].items():
        assert {"steps_to_target_median", "final_speed_mps", "final_fall_rate", "min_return_ratio_after_10k",
                "intervention_rate_first20", "intervention_rate_last20"} <= set(a), name
        assert 0 <= a["final_fall_rate"] <= 1 and a["budget_steps"] == 1024 and abs(a["final_speed_mps"]) < 1
        assert all(s is None or 0 <= s <= 1024 for s in a["steps_to_target"]), name
        assert a["intervention_rate_first20"] is None                 # no expert takes over in PPO
    assert 0.05 < data["trot_speed_mps"] < 0.5
    assert data["target_speed_mps"] == pytest.approx(1.1 * data["trot_speed_mps"], abs=1e-3)
    for key in ("bc_fall_rate", "finetuned_fall_rate", "finetuned_last_fall_rate", "scratch_final_fall_rate"):
        assert 0 <= data[key] <= 1, key
    assert data["bc_eval_return"] != 0 and data["handoff_first_eval_return_ratio"] is not None
    histories = json.loads((results / "sample_efficiency_histories.json").read_text())
    assert set(histories) == {"ppo_handoff", "ppo_scratch"}
    for name, runs in histories.items():             # one run per seed, evaluated at 0, every eval_freq, the end
        assert len(runs) == 1 and [e["timesteps"] for e in runs[0]] == [0, 512, 1024], name
    assert (results / "sample_efficiency.png").is_file()


@pytest.mark.slow
def test_main_job(tmp_path):
    """The --quick job at the tests' budget, with this very code as its own baseline."""
    out = run_script("main_job", "--quick", "--preset", "tiny", "--baseline-code", str(ROOT), results=tmp_path)
    data = load(tmp_path / "main_job.json")
    printed(out, data)
    assert data["job"] == "quick" and data["presets"] == ["tiny"]
    for fig in (data, data["baseline"]):
        stages = fig["stages"]
        assert {"demonstrations", "bc", "bc_evaluation", "learning", "evaluations", "confirmations", "clips",
                "checkpoints", "final_figures", "other"} == set(stages)
        assert all(v >= 0 for v in stages.values()) and sum(stages.values()) == pytest.approx(fig["total_s"], abs=0.5)
        evaluating = stages["evaluations"] + stages["confirmations"] + stages["final_figures"]
        assert fig["evaluation_fraction"] == pytest.approx(evaluating / fig["total_s"], abs=2e-3)
        assert fig["evaluations"] == 3 and 0 <= fig["shipped"]["fall_rate"] <= 1     # 0, 512 and 1024 steps
        assert fig["ppo_learning_steps_per_s"] > 0
    # the same code and seed: the same training, evaluations and shipped model
    assert data["baseline"]["shipped"]["speed_mps"] == data["shipped"]["speed_mps"]
    assert data["total_ratio_to_baseline"] == pytest.approx(data["total_s"] / data["baseline"]["total_s"], abs=2e-3)
    assert not list(tmp_path.glob("pidog_main_job_*"))          # the runs' folders are gone


@pytest.mark.slow
def test_sysid_roundtrip(tmp_path):
    out = run_script("sysid_roundtrip", "--quick", "--repeats", "1", "--max-evals", "20", results=tmp_path)
    data = load(tmp_path / "sysid_roundtrip.json")
    printed(out, data)
    assert data["quick"] is True and len(data["cases"]) == 1
    case = data["cases"][0]
    assert case["name"] == "nominal" and case["flashes_matched"] == 15 and case["tracked_fraction"] > 0.5
    assert set(case["relative_error"]) >= {"stall_torque", "damping", "kp"}
    for key, rel in case["relative_error"].items():
        assert rel == pytest.approx(case["fitted"][key] / case["true"][key] - 1, abs=1e-3), key
    assert case["delay_error_ms"] == pytest.approx(1000 * (case["fitted"]["delay"] - case["true"]["delay"]), abs=0.01)
    assert 0 <= case["holdout_mae_deg"] < 5
    assert data["worst_holdout_mae_deg"] == case["holdout_mae_deg"]


@pytest.mark.slow
def test_robust_recipe(tmp_path):
    out = run_script("robust_recipe", "--quick", "--seeds", "0", "--workdir", str(tmp_path / "w"), results=tmp_path)
    data = load(tmp_path / "robust_recipe.json")
    printed(out, data)
    assert (tmp_path / "robust_recipe.png").is_file()
    from training.suites.robustness import CONDITIONS
    measured = {"trot", "default_recipe", "smoothness", "student", "teacher"}
    assert measured < set(data["policies"]) and data["policies"]["student_at_trot_speed"]["measured"] is False
    for label in measured:
        p = data["policies"][label]
        assert set(p["conditions"]) == set(CONDITIONS)
        for name, c in p["conditions"].items():
            assert c["episodes"] == 2 and c["falls"] == round(c["fall_rate"] * 2) and c["in_range"] == (name == "nominal")
        assert p["worst_fall_rate"] == max(c["fall_rate"] for c in p["conditions"].values())
    assert set(data["joint_power"]) == measured - {"teacher"}
    assert all(0 <= v["mean_w"] <= v["p99_w"] for v in data["joint_power"].values())
    student, trot = data["policies"]["student"]["conditions"], data["policies"]["trot"]["conditions"]
    assert data["acceptance"]["failing_conditions"] == sorted(
        n for n in student if student[n]["fall_rate"] > trot[n]["fall_rate"] + (0 if n == "nominal" else 0.05) + 1e-9)
    assert (tmp_path / "w" / "robust_s0" / "student_policy.pth").is_file()
    # Run again, the bench reuses what it trained (it would fail to train with these flags).
    from bench.robust_recipe import train
    for recipe in ("default_recipe", "smoothness", "robust"):
        again = train(recipe, ["--no-such-flag"], 0, [], tmp_path / "w")
        assert again == data["training"][recipe]["0"]
