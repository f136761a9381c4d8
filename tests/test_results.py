"""Results that cannot go stale: every bench run is a self-describing JSON (bench/_common.write_result), kept;
`python -m bench.publish` copies chosen runs into docs/results/data/; `python -m bench.report` renders the docs
from them, marking results measured with earlier defaults."""

import json
import re
import sys

import pytest

import bench._common as common
from bench import publish, report

FIGURES = {"forward_speed_mps": 0.14, "lateral_drift_ratio": 0.01, "heading_change_deg": 1.3, "falls_of_10": 0.25,
           "randomized_mean_speed_mps": 0.12, "nominal_return": 438.0, "seeds": 40}


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    # A clean checkout's provenance, also where git cannot answer (the image has no .git)
    monkeypatch.setattr(common, "git_state", lambda: {"commit": "0123456789abcdef" * 2 + "01234567",
                                                      "dirty": False, "dirty_paths": []})
    return tmp_path / "results"


def written(results, name="trot", figures=FIGURES) -> dict:
    path = common.write_result(name, figures)
    return json.loads(path.read_text())


def test_every_run_is_kept_and_describes_itself(results, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench/trot_check.py", "--seeds", "40"])
    first = written(results)
    second = written(results, figures={**FIGURES, "forward_speed_mps": 0.15})
    kept = sorted((results / common.RUNS).glob("trot_*.json"))
    assert len(kept) == 2                                           # nothing overwritten
    assert json.loads((results / "trot.json").read_text()) == second != first
    run, host = second["run"], second["machine"]
    assert run["bench"] == "trot" and run["schema"] == common.SCHEMA and "randomized" in run["protocol"]
    assert run["command"] == "python bench/trot_check.py --seeds 40" and run["settings"] == {"--seeds": "40"}
    assert re.fullmatch(r"[0-9a-f]{40}", run["commit"]) and isinstance(run["dirty"], bool)
    assert run["defaults"] == common.defaults_hashes() and set(run["defaults"]) == {"env", "pipeline"}
    assert run["seeds"] == "0-39" and run["episodes"] == 40
    assert run["versions"]["torch"] and run["versions"]["mujoco"] and run["wall_seconds"] >= 0
    assert host["cpu_model"] and host["usable_cores"] >= 1 and re.match(r"\d{4}-\d\d-\d\dT", host["time"])
    assert second["forward_speed_mps"] == 0.15                      # the figures stay at the top level


def test_flags_are_recorded_as_typed(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/bench/sample_efficiency.py", "--skip-scratch", "--seeds", "0", "1",
                                      "--set", "a=1", "--set=b=2"])
    command, flags = common.command_line()
    assert command.startswith("python bench/sample_efficiency.py --skip-scratch")
    assert flags == {"--skip-scratch": True, "--seeds": ["0", "1"], "--set": ["a=1", "b=2"]}
    monkeypatch.setattr(sys, "argv", ["pytest"])                    # main() called from Python
    assert common.command_line() == (None, {})


def test_the_defaults_hash_ignores_run_names_but_not_settings(monkeypatch):
    import time

    from training.config import PipelineConfig
    before = common.defaults_hashes()
    monkeypatch.setattr(time, "strftime", lambda *a: "bc_rl_20000101_000000")   # another default run name
    assert PipelineConfig().experiment_name == "bc_rl_20000101_000000"
    assert common.defaults_hashes() == before
    to_dict = PipelineConfig.to_dict
    monkeypatch.setattr(PipelineConfig, "to_dict", lambda self: {**to_dict(self), "ppo": {**to_dict(self)["ppo"],
                                                                                          "gamma": 0.9}})
    after = common.defaults_hashes()
    assert after["pipeline"] != before["pipeline"] and after["env"] == before["env"]


def test_publish_copies_checked_runs_only(results, tmp_path, capsys):
    data_dir = tmp_path / "data"
    path = common.write_result("trot", FIGURES)
    run = json.loads(path.read_text())
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({**run, "run": {**run["run"], "dirty": False}}))
    [out] = publish.publish([clean], data_dir=data_dir)
    assert out.parent == data_dir and re.fullmatch(r"trot_\d{8}-\d{6}_[0-9a-f]{7}\.json", out.name)
    assert publish.publish([clean], data_dir=data_dir) == [out]     # the same run again: no change
    dirty = tmp_path / "dirty.json"
    dirty.write_text(json.dumps({**run, "run": {**run["run"], "dirty": True, "dirty_paths": ["x.py"]}}))
    old = tmp_path / "old.json"
    old.write_text(json.dumps(FIGURES))                             # written before runs described themselves
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps({**run, "forward_speed_mps": float("nan")}))
    for bad, says in ((dirty, "uncommitted"), (old, "no `run` block"), (nan, "finite"),
                      (tmp_path / "none.json", "no such file")):
        assert publish.main([str(bad), "--data", str(tmp_path / "other")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "other").exists()                         # nothing written on a refusal
    assert publish.publish([dirty], allow_dirty=True, data_dir=tmp_path / "other")


def test_fall_rates_are_counts_with_an_interval():
    lo, hi = report.wilson(1, 40)
    assert lo == pytest.approx(0.0044, abs=1e-4) and hi == pytest.approx(0.1288, abs=1e-4)
    assert report.wilson(0, 60)[0] == 0 and report.wilson(60, 60)[1] == pytest.approx(1)
    assert report.falls(3, 60) == "3/60 (1.7-14 %)" and report.falls(0, 20) == "0/20 (0-16 %)"


def published(results, tmp_path, figures=FIGURES, name="trot", **run_changes) -> dict:
    data = json.loads(common.write_result(name, figures).read_text())
    data["run"].update(run_changes)
    data["_file"] = f"{name}_x.json"
    return data


def test_a_result_with_other_defaults_is_marked_automatically(results, tmp_path):
    today = common.defaults_hashes()
    current = published(results, tmp_path)
    older = published(results, tmp_path, defaults={**today, "env": "0" * 12})
    assert "earlier defaults" not in report.results_page([current], today)
    page = report.results_page([older], today)
    assert "**Measured with earlier defaults**" in page and "1/40 (0.4-13 %)" in page
    assert "earlier defaults" in report.headline([older], today)
    # A PPO default does not make the trot's figures stale: the trot depends on the env only.
    assert "earlier defaults" not in report.results_page(
        [published(results, tmp_path, defaults={**today, "pipeline": "0" * 12})], today)


def test_every_table_says_where_and_how(results, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench/trot_check.py", "--seeds", "40"])
    today = common.defaults_hashes()
    page = report.results_page([published(results, tmp_path)], today)
    section = page[page.index("## The trot"):page.index("## Environment throughput")]
    assert "Measured on " in section and "Reproduce with: `python bench/trot_check.py --seeds 40` at that commit" in section
    assert "Not yet measured" in page[page.index("## Environment throughput"):]


def test_the_main_job_block_waits_for_data(results, tmp_path, monkeypatch):
    today = common.defaults_hashes()
    assert report.main_job_block([], today).count("not yet measured") == 2
    monkeypatch.setattr(sys, "argv", ["bench/main_job.py", "--quick"])
    quick = published(results, tmp_path, {"total_s": 150.0}, name="main_job")
    block = report.main_job_block([quick], today)
    assert "The default job: wall time not yet measured" in block and "`--quick`: 2.5 min (" in block
    smoke = published(results, tmp_path, {"total_s": 20.0, "job": "default", "presets": ["tiny"]}, name="main_job")
    assert report.main_job_block([smoke], today).count("not yet measured") == 2    # a smoke budget is no job time
    full = published(results, tmp_path, {"total_s": 600.0, "job": "default", "presets": [],
                                         "shipped": {"speed_mps": 0.15, "fall_rate": 0.02, "episodes": 50}},
                     name="main_job")
    assert "The default job: 10.0 min (" in report.main_job_block([full, quick], today)
    assert "0.150 m/s / 1/50 (0.4-10 %)" in report.results_page([full], today)


def test_generated_blocks_are_replaced_between_their_markers():
    text = ("a\n<!-- generated: x (python -m bench.report) -->\nold\n<!-- end generated: x -->\nb\n")
    assert report.replace_blocks(text, {"x": "new\n"}, "t") == text.replace("old", "new")
    with pytest.raises(publish.PublishError, match="no generated block 'y'"):
        report.replace_blocks(text, {"y": "new\n"}, "t")


VENDOR = {"gaits": {"trot": {"nominal_speed_mps": 0.0299, "nominal_fell": True, "nominal_kneel_share": 0.205,
                             "falls": 2, "walked_forward": 0, "episodes": 10, "mean_kneel_share": 0.727,
                             "mean_speed_mps": 0.0201, "min_distance_m": -0.018},
                    "walk": {"nominal_speed_mps": 0.0303, "nominal_fell": False, "nominal_kneel_share": 0.0,
                             "falls": 0, "walked_forward": 8, "episodes": 10, "mean_kneel_share": 0.144,
                             "mean_speed_mps": 0.043, "min_distance_m": 0.259}},
          "passed": False, "seconds": 20.0, "target": ">= 9 of 10 randomized episodes walk forward"}
ACTUATOR = {"servo": {"stall_torque_nm": 0.19, "no_load_speed_rad_s": 9.6, "peak_power_w": 0.5308,
                      "measured_stall_torque_nm": 0.185, "measured_no_load_speed_rad_s": 9.5998},
            "gaits": {"trot": {"peak_power_w": 0.5308, "excess_power_w": 0.0, "speed_mps": 0.1333, "fell": False},
                      "vendor_walk": {"peak_power_w": 0.4127, "excess_power_w": 0.0042, "speed_mps": 0.0303,
                                      "fell": False}},
            "passed": True, "seconds": 20.0}
SYSID = {"cases": [{"name": "nominal", "relative_error": {"stall_torque": -0.066, "damping": -0.0639, "kp": 0.0131},
                    "delay_error_ms": 0.01, "holdout_mae_deg": 0.121},
                   {"name": "slow", "relative_error": {"stall_torque": -0.0958, "damping": -0.0951, "kp": -0.0326},
                    "delay_error_ms": 0.02, "holdout_mae_deg": 0.111}],
         "worst_relative_error": 0.0958, "quick": False}



def _policy(nominal, weaker, speed):
    conditions = {"nominal": {"speed_mps": speed, "fall_rate": nominal / 60, "falls": nominal, "episodes": 60,
                              "in_range": True},
                  "weaker_servos": {"speed_mps": speed - 0.03, "fall_rate": weaker / 60, "falls": weaker,
                                    "episodes": 60, "in_range": False}}
    worst = "weaker_servos" if weaker >= nominal else "nominal"
    return {"conditions": conditions, "worst_condition": worst, "worst_fall_rate": max(nominal, weaker) / 60,
            "worst_in_range_fall_rate": nominal / 60, "nominal_speed_mps": speed}


ROBUST = {"policies": {"trot": _policy(0, 24, 0.107), "default_recipe": _policy(1, 40, 0.124),
                       "student": _policy(0, 27, 0.118),
                       "student_at_trot_speed": {"conditions": {}, "measured": False, "why": "not conditioned"}},
          "joint_power": {"trot": {"p99_w": 0.98, "mean_w": 0.68}, "student": {"p99_w": 0.91, "mean_w": 0.6}},
          "acceptance": {"student_at_least_as_fast_as_default_recipe": False,
                         "student_in_range_falls_at_most_trot": True, "failing_conditions": [],
                         "student_at_trot_speed": None},
          "seeds": [0], "episodes": 60}


def section(page: str, title: str) -> str:
    start = page.index(f"## {title}")
    return page[start:page.index("\n## ", start + 1)]


def changed(data: dict, path: tuple, value) -> dict:
    """A deep copy of `data` with the value at `path` (keys and list indices) replaced."""
    out = json.loads(json.dumps(data))
    place = out
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return out


@pytest.mark.parametrize("name, title, figures, expected, edit, value, edited", [
    ("vendor_gaits", "The vendor's gaits", VENDOR,
     ["| 0 of 10 | >= 9 of 10 |", "| 8 of 10 | >= 9 of 10 |", "2/10 (5.7-51 %)", "0/10 (0-28 %)", "0.020 m/s",
      "0.043 m/s", "| 73 % |", "| 14 % |", "0.030 m/s, fell", "0.030 m/s, did not fall"],
     ("gaits", "walk", "walked_forward"), 9, "| 9 of 10 | >= 9 of 10 |"),
    ("actuator_check", "The servo model against its parameters", ACTUATOR,
     ["0.190 / 0.185 N m (-2.6 %) | within 5 %", "9.60 / 9.60 rad/s (+0.0 %) | within 5 %", "| 0.531 W |",
      "`vendor_walk`: peak joint power", "| 0.413 W |", "| 0.004 W | <= 0.01 W |", "| 0.000 W | <= 0.01 W |"],
     ("gaits", "vendor_walk", "excess_power_w"), 0.25, "| 0.250 W | <= 0.01 W |"),
    ("sysid_roundtrip", "Servo identification, synthetic robots", SYSID,
     ["`nominal`: relative error", "| -6.6 / -6.4 / +1.3 % | <= 10 % each |", "| -9.6 / -9.5 / -3.3 % |",
      "| 0.01 ms | <= 4 ms |", "| 0.02 ms |", "| 0.121 deg | <= 1.0 deg |", "| 0.111 deg |"],
     ("cases", 1, "holdout_mae_deg"), 0.734, "| 0.734 deg | <= 1.0 deg |"),
    ("robust_recipe", "Teacher -> student against today's recipe and the trot", ROBUST,
     ["| 0.118 m/s; weaker_servos, 27/60 (", "| 0.124 m/s; weaker_servos, 40/60 (",
      "`weaker_servos` (outside): falls of the trot / default recipe / student | 24/60 (",
      "| student <= trot + 5 points |", "`nominal` (in range)", "| student <= trot |", "| 0.91 W |",
      "student at least as fast as default recipe | no | yes", "student in range falls at most trot | yes | yes"],
     ("policies", "student", "nominal_speed_mps"), 0.131, "| 0.131 m/s; weaker_servos, 27/60 ("),
])
def test_nested_benches_render_their_figures(results, tmp_path, name, title, figures, expected, edit, value, edited):
    today = common.defaults_hashes()
    part = section(report.results_page([published(results, tmp_path, figures, name=name)], today), title)
    assert f"(`bench/{name}.py`)" in part and "Measured on " in part and "earlier defaults" not in part
    for text in expected:
        assert text in part, text
    assert "`gaits`" not in part and "`cases`" not in part                 # not the generic top-level rows
    again = section(report.results_page([published(results, tmp_path, changed(figures, edit, value), name=name)],
                                        today), title)
    assert edited in again and again != part


def test_nested_benches_mark_earlier_defaults_by_the_env(results, tmp_path):
    today = common.defaults_hashes()
    for name, figures in (("vendor_gaits", VENDOR), ("actuator_check", ACTUATOR), ("sysid_roundtrip", SYSID)):
        assert report.bench_of(name).scope == "env"
        old = published(results, tmp_path, figures, name=name, defaults={**today, "env": "0" * 12})
        assert "**Measured with earlier defaults**" in report.results_page([old], today)
        assert "earlier defaults" not in report.results_page(
            [published(results, tmp_path, figures, name=name, defaults={**today, "pipeline": "0" * 12})], today)


JOB = {"total_s": 1220.9, "job": "default", "presets": [], "trot_speed_mps": 0.1199,
       "shipped": {"speed_mps": 0.13, "fall_rate": 0.02, "episodes": 50, "model": None}}


def test_the_headline_says_what_the_default_job_ships(results, tmp_path, monkeypatch):
    today = common.defaults_hashes()
    fallback = "Fine-tuned policies against the trot: not yet published as data"
    assert fallback in report.headline([], today) and "No published results yet" in report.headline([], today)
    trot = published(results, tmp_path)
    assert fallback in report.headline([trot], today)
    job = published(results, tmp_path, JOB, name="main_job")
    line = report.headline([trot, job], today)
    assert fallback not in line and "No published results yet" not in line
    assert ("- The default job ships a policy walking 0.130 m/s with 1/50 (0.4-10 %) falls on its final randomized "
            "episodes, 1.08x the trot's 0.120 m/s on the same kind of episodes (") in line
    faster = published(results, tmp_path, {**JOB, "shipped": {**JOB["shipped"], "speed_mps": 0.15}}, name="main_job")
    assert "walking 0.150 m/s" in report.headline([trot, faster], today) and "1.25x" in report.headline([faster], today)
    stale = published(results, tmp_path, JOB, name="main_job", defaults={**today, "pipeline": "0" * 12})
    assert "on the same kind of episodes (" in report.headline([stale], today)
    assert "measured with earlier defaults)." in report.headline([stale], today)
    # --quick, or a smoke test's presets, is not the default job: the old sentence stays.
    monkeypatch.setattr(sys, "argv", ["bench/main_job.py", "--quick"])
    quick = published(results, tmp_path, {**JOB, "job": "quick"}, name="main_job")
    smoke = published(results, tmp_path, {**JOB, "presets": ["tiny"]}, name="main_job")
    assert fallback in report.headline([trot, quick, smoke], today)


def test_the_headline_says_how_the_vendor_gaits_walk(results, tmp_path):
    today = common.defaults_hashes()
    assert "vendor's own" not in report.headline([published(results, tmp_path)], today)
    vendor = published(results, tmp_path, VENDOR, name="vendor_gaits")
    line = report.headline([vendor], today)
    assert ("- The vendor's own trot walks upright in 0 of 10 randomized episodes in the model, its walk in 8 of 10 "
            "(target 9 of 10; why not: [docs/experiments/servo-model.md](docs/experiments/servo-model.md); ") in line
    better = published(results, tmp_path, changed(changed(changed(VENDOR, ("gaits", "trot", "walked_forward"), 9),
                                                          ("gaits", "walk", "walked_forward"), 10), ("passed",), True),
                       name="vendor_gaits")
    assert ("trot walks upright in 9 of 10 randomized episodes in the model, its walk in 10 of 10 "
            "(target 9 of 10; the servo model: ") in report.headline([better], today)
    old = published(results, tmp_path, VENDOR, name="vendor_gaits", defaults={**today, "env": "0" * 12})
    assert "measured with earlier defaults)." in report.headline([old], today)
