"""`pidog evaluate --suite robustness|commands`: the conditions, the figures and verdicts, the output folder
(checked before any work, never over earlier results), and both suites end to end on a trained policy."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from training import cli
from training.suites import commands, robustness


def test_robustness_conditions_are_valid_and_outside_the_training_ranges():
    base = EnvConfig()
    assert robustness.IN_RANGE == {"nominal"} and not robustness.CONDITIONS["nominal"]
    for name, settings in robustness.CONDITIONS.items():
        cfg = robustness.condition_config(base, name)                 # validates
        assert cfg.randomization.enabled
        for key, value in settings.items():
            trained = config_tree.get(base, key)
            assert config_tree.get(cfg, key) == (tuple(value) if isinstance(value, tuple) else value)
            lo, hi = (trained, trained) if not isinstance(trained, tuple) else trained
            v_lo, v_hi = (value, value) if not isinstance(value, tuple) else value
            assert v_lo > hi or v_hi < lo, (name, key)                  # entirely past the training range


def test_robustness_verdicts_follow_the_figures():
    fig = lambda speed, falls: {"speed_mps": speed, "fall_rate": falls}   # noqa: E731
    rows = {"calm": {"trot": fig(0.10, 0.05), "policy": fig(0.15, 0.05)},
            "hard": {"trot": fig(0.10, 0.10), "policy": fig(0.09, 0.15)}}
    v = robustness.verdicts(rows, "policy")
    assert v["calm"] == {"falls_at_most_trot": True, "speed_at_least_trot": True}
    assert v["hard"] == {"falls_at_most_trot": False, "speed_at_least_trot": False}
    assert "misses: falls_at_most_trot, speed_at_least_trot" in robustness.summary_lines(
        {"conditions": rows, "verdicts": v})[1]


def test_command_grid_summary_and_verdicts():
    cells = [{"cmd_vx": v, "cmd_wz": w, "vx": v + 0.01, "wz": w - 0.05 * (w != 0), "fall_rate": 0.0,
              "vx_error": 0.01, "wz_error": 0.05 * (w != 0)} for v in (0.0, 0.06, 0.12) for w in (-0.2, 0.0, 0.2)]
    s = commands.summarize(cells)
    assert s["cells_within_tolerance"] == 9 and s["zero_command_drift_mps"] == 0.01
    assert s["mean_tracking_error"] == pytest.approx((0.01 / 0.03 + (6 * 0.05 / 9) / 0.10) / 2, abs=1e-3)
    worse = commands.summarize([{**c, "vx_error": 0.05, "fall_rate": 0.1} for c in cells])
    assert commands.verdicts(s, worse) == {"every_cell_within_tolerance": True, "zero_command_drift_ok": True,
                                           "falls_ok": True, "better_than_the_trot": True}
    assert commands.verdicts(worse, s) == {"every_cell_within_tolerance": False, "zero_command_drift_ok": True,
                                           "falls_ok": False, "better_than_the_trot": False}


def _cell(cmd_vx, cmd_wz, vx, wz, falls=0.0):
    return {"cmd_vx": cmd_vx, "cmd_wz": cmd_wz, "vx": vx, "wz": wz, "fall_rate": falls}


RULE = [  # (the trot's figures in a cell, in the grid?)
    (_cell(0.0, 0.0, 0.03, 0.2, falls=0.5), True),          # the zero command: always
    (_cell(0.06, 0.2, 0.03, 0.1, falls=0.05), True),        # exactly half of both, 5 % falls
    (_cell(0.12, -0.4, 0.2, -0.3), True),                   # more than asked
    (_cell(0.0, 0.4, -0.02, 0.2), True),                    # an axis commanded 0 passes
    (_cell(0.06, 0.2, 0.0299, 0.2), False),                 # under half of vx
    (_cell(0.12, 0.4, 0.12, 0.199), False),                 # under half of wz
    (_cell(0.06, -0.4, 0.06, 0.3), False),                  # the wrong way round
    (_cell(0.06, 0.0, -0.06, 0.0), False),                  # backwards
    (_cell(0.06, 0.2, 0.06, 0.2, falls=0.1), False),        # reaches it but falls
]


@pytest.mark.parametrize("cell,kept", RULE)
def test_a_cell_is_in_the_grid_only_if_the_trot_reaches_half_of_it(cell, kept):
    assert (commands.shortfalls(cell) == []) == kept
    problem = commands.grid_problem({"format": commands.GRID_FORMAT, "candidates": {
        "vx": list(commands.CANDIDATE_VX), "wz": list(commands.CANDIDATE_WZ)},
        "cells": [_cell(0.0, 0.0, 0.0, 0.0)] + [cell] * (not commands.is_zero(cell))})
    assert (problem is None) == kept, problem


# The trot's figures per candidate cell for the tests below (nothing is simulated): half of every command,
# except where it says.
REACHED = {(0.0, 0.0): (0.01, 0.0, 0.3),        # falls, but the zero command is always in
           (0.12, 0.4): (0.1, 0.19, 0.0),       # under half of wz: out
           (0.12, -0.4): (0.1, -0.2, 0.0),      # exactly half: in
           (0.06, 0.2): (0.06, -0.15, 0.0),     # turns the wrong way: out
           (0.06, -0.2): (0.029, -0.2, 0.0),    # under half of vx: out
           (0.0, 0.4): (-0.02, 0.3, 0.1)}       # reaches it, falls: out
DROPPED = {(0.12, 0.4), (0.06, 0.2), (0.06, -0.2), (0.0, 0.4)}


def fake_cell(vx, wz, sources, base, episodes, seed, allow_pickle=False):
    got_vx, got_wz, falls = REACHED.get((vx, wz), (vx / 2, wz / 2, 0.0))
    return {label: {"cmd_vx": vx, "cmd_wz": wz, "vx": got_vx, "wz": got_wz, "fall_rate": falls,
                    "vx_error": round(abs(got_vx - vx), 4), "wz_error": round(abs(got_wz - wz), 4)}
            for label in sources}


@pytest.fixture
def grid_file(tmp_path, monkeypatch):
    """The grid file in a temporary folder, and every cell answered by `fake_cell`."""
    monkeypatch.setattr(commands, "GRID_FILE", tmp_path / "command_grid.json")
    monkeypatch.setattr(commands, "run_cell", fake_cell)
    return tmp_path / "command_grid.json"


def test_rescope_writes_the_cells_the_trot_reaches_and_the_suite_runs_on_them(grid_file, tmp_path, capsys):
    argv = ["evaluate", "--suite", "commands", "--gait", "trot", "--rescope", "--workers", "1", "--episodes", "3"]
    assert cli.main(argv) == 0
    grid = json.loads(grid_file.read_text())
    candidates = {(v, w) for v in commands.CANDIDATE_VX for w in commands.CANDIDATE_WZ}
    assert {(c["cmd_vx"], c["cmd_wz"]) for c in grid["cells"]} == candidates - DROPPED
    assert {(c["cmd_vx"], c["cmd_wz"]): c["why"] for c in grid["dropped"]}.keys() == DROPPED
    assert next(c for c in grid["cells"] if (c["cmd_vx"], c["cmd_wz"]) == (0.12, -0.4))["wz_reached"] == 0.5
    assert grid["command"] == "pidog " + " ".join(argv) and grid["episodes_per_cell"] == 3
    assert grid["env_config_hash"] == config_tree.apply(EnvConfig(), "command.enabled", True).hash()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", grid["date"]) and grid["seed_base"] == commands.SEED_BASE
    assert commands.load_grid() == grid
    assert "dropped (wz +0.190 rad/s is under half of +0.40)" in capsys.readouterr().out

    out = tmp_path / "suite"
    assert cli.main(["evaluate", "--suite", "commands", "--gait", "trot", "--workers", "1", "--out", str(out)]) == 0
    data = json.loads((out / "commands.json").read_text())
    assert sorted((c["cmd_vx"], c["cmd_wz"]) for c in data["trot"]["cells"]) == sorted(candidates - DROPPED)
    assert data["grid"]["measured"]["env_config_hash"] == grid["env_config_hash"]
    missing = commands.plot_grid(data["trot"]["cells"], "vx_error", data["grid"]["vx"], data["grid"]["wz"])
    assert {(commands.CANDIDATE_VX[i], commands.CANDIDATE_WZ[j]) for i, j in zip(*np.nonzero(np.isnan(missing)))} \
        == DROPPED                                                     # drawn grey
    assert (out / "commands.png").is_file()
    assert f"grid: {len(candidates) - len(DROPPED)} of {len(candidates)} candidate cells" in capsys.readouterr().out


def _grid(**change):
    grid = {"format": commands.GRID_FORMAT, "candidates": {"vx": list(commands.CANDIDATE_VX),
                                                           "wz": list(commands.CANDIDATE_WZ)},
            "cells": [_cell(0.0, 0.0, 0.0, 0.0), _cell(0.06, 0.0, 0.06, 0.0)]}
    return json.dumps({**grid, **change})


MALFORMED = [
    (None, "not found: measure the commands grid with pidog evaluate --suite commands --gait trot --rescope"),
    ("{not json", "is not a command grid (Expecting property name"),
    (_grid(format="v0"), "no format"),
    (_grid(cells=[]), "no cells"),
    (_grid(cells={"0": 1}), "no cells"),
    (_grid(candidates={"vx": [0.0], "wz": [0.0]}), "measured over the candidates"),
    (_grid(cells=[_cell(0.06, 0.0, 0.06, 0.0)]), "the zero command is not in it"),
    (_grid(cells=[_cell(0.0, 0.0, 0.0, 0.0), _cell(0.12, 0.4, 0.1, 0.14)]),
     "cell vx 0.12 wz +0.4 is in it but the trot misses it (wz +0.140 rad/s is under half of +0.40)"),
    (_grid(cells=[_cell(0.0, 0.0, 0.0, 0.0), _cell(0.05, 0.0, 0.05, 0.0)]), "cell vx 0.05 wz +0 is not a candidate"),
    (_grid(cells=[_cell(0.0, 0.0, 0.0, 0.0), {"cmd_vx": 0.06, "cmd_wz": 0.0, "vx": "fast"}]), "cell 1 lacks a number"),
]


@pytest.mark.parametrize("text,says", MALFORMED, ids=[s.split(" (")[0][:40] for _, s in MALFORMED])
def test_a_missing_or_malformed_grid_file_is_one_line_and_exit_2_before_any_work(text, says, grid_file, tmp_path,
                                                                                capsys, monkeypatch):
    if text is not None:
        grid_file.write_text(text)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    assert cli.main(["evaluate", "--suite", "commands", "--gait", "trot", "--out", "r"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert sorted(tmp_path.iterdir()) == before                        # nothing created


BAD_RESCOPE = [
    (["--suite", "robustness", "--gait", "trot", "--rescope"], "--rescope applies to --suite commands"),
    (["--gait", "trot", "--rescope"], "--rescope applies to --suite runs"),
    (["--suite", "commands", "--model", "m.zip", "--rescope"], "--gait trot, not --model"),
    (["--suite", "commands", "--gait", "trot", "--rescope", "--out", "r"], "--out does not apply to --rescope"),
    (["--suite", "commands", "--gait", "trot", "--rescope", "--force"], "--force does not apply to --rescope"),
]


@pytest.mark.parametrize("argv,says", BAD_RESCOPE, ids=[" ".join(a) for a, _ in BAD_RESCOPE])
def test_a_bad_rescope_is_one_line_and_exit_2_before_any_work(argv, says, grid_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []                               # no grid file, no folder


def test_the_committed_grid_holds_what_the_trot_reached_on_the_default_env():
    grid = commands.load_grid()                                        # the format and the rule
    assert (0.0, 0.0) in commands.grid_cells(grid)
    both = grid["cells"] + grid["dropped"]
    assert sorted((c["cmd_vx"], c["cmd_wz"]) for c in both) == sorted(
        (v, w) for v in commands.CANDIDATE_VX for w in commands.CANDIDATE_WZ)
    assert all(c["why"] == "; ".join(commands.shortfalls(c)) != "" for c in grid["dropped"])
    assert grid["episodes_per_cell"] == commands.DEFAULT_EPISODES and grid["seed_base"] == commands.SEED_BASE
    assert grid["episode_seconds"] == EnvConfig().episode_seconds
    assert re.fullmatch(r"[0-9a-f]{40}", grid["commit"]) and grid["command"].startswith(commands.RESCOPE)


def test_the_docs_state_the_candidates_and_the_rule():
    text = " ".join((Path(__file__).resolve().parent.parent / "docs" / "evaluation.md").read_text().split())
    part = text[text.index("**Commands** (`--suite commands`)"):text.index("## Benchmarks")]
    vx = " / ".join(f"{v:g}" for v in commands.CANDIDATE_VX) + " m/s"
    wz = " / ".join(f"{w:+g}" if w else "0" for w in commands.CANDIDATE_WZ) + " rad/s"
    assert vx in part and wz in part and commands.RESCOPE in part and "at least half" in part


BAD = [
    (["--json", "x.json"], "--json does not apply"),
    (["--no-randomization"], "--no-randomization does not apply"),
    (["--randomization-level", "1.5"], "--randomization-level does not apply"),
    (["--conditions", "nominal", "no_such"], "no condition 'no_such'"),
    (["--set", "ppo.gamma=0.9"], "env.* settings only"),
    (["--set", "env.obs.history=3"], "changes what the policy observes"),
    (["--workers", "0"], "--workers"),
]


@pytest.mark.parametrize("argv,says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_suite_option_is_one_line_and_exit_2_before_any_work(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(["evaluate", "--suite", "robustness", "--gait", "trot", "--out", "r", *argv])
    except SystemExit as exc:                                          # argparse's own (one line: cli.Parser)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []                               # nothing created


def test_options_of_a_suite_are_refused_without_one(capsys):
    assert cli.main(["evaluate", "--gait", "trot", "--workers", "2"]) == 2
    assert "--workers applies to --suite runs" in capsys.readouterr().err


def test_earlier_results_are_kept_unless_forced(tmp_path, capsys):
    (tmp_path / "robustness.json").write_text("{}")
    argv = ["evaluate", "--suite", "robustness", "--gait", "trot", "--out", str(tmp_path), "--conditions", "nominal",
            "--episodes", "1", "--set", "env.episode_seconds=0.2", "--workers", "1"]
    assert cli.main(argv) == 2
    assert "exists: pass --force" in capsys.readouterr().err
    assert (tmp_path / "robustness.json").read_text() == "{}"
    assert cli.main([*argv, "--force"]) == 0
    assert json.loads((tmp_path / "robustness.json").read_text())["conditions"]["nominal"]["trot"]["fall_rate"] == 0


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


@pytest.fixture(scope="module")
def command_policy(tmp_path_factory):
    """A command-task policy at the tests' budget, exported for the robot."""
    root = tmp_path_factory.mktemp("suites")
    assert cli.main(["train", "--preset", "tiny", "--task", "command", "--output-dir", str(root),
                     "--experiment-name", "cmd", "--no-live"]) == 0
    model = root / "cmd" / "best_model.zip"
    assert cli.main(["export", "--model", str(model), "--check-steps", "20"]) == 0
    return model


@pytest.mark.slow
def test_the_commands_suite_writes_the_grid_for_the_policy_and_the_trot(command_policy, capsys):
    argv = ["evaluate", "--suite", "commands", "--model", str(command_policy), "--episodes", "1",
            "--set", "env.episode_seconds=1", "--workers", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads((command_policy.parent / "commands" / "commands.json").read_text())
    assert _finite(data) and data["episodes_per_cell"] == 1 and data["episode_seconds"] == 1
    assert data["command"] is None or data["command"].startswith("pidog")
    for who in ("trot", "policy"):
        cells = data[who]["cells"]
        assert [(c["cmd_vx"], c["cmd_wz"]) for c in cells] == commands.grid_cells(commands.load_grid())
        for c in cells:
            assert 0 <= c["fall_rate"] <= 1
            assert c["vx_error"] == pytest.approx(abs(c["vx"] - c["cmd_vx"]), abs=2e-4)
        assert data[who]["mean_tracking_error"] == pytest.approx(
            sum(commands.cell_error(c) for c in cells) / len(cells), abs=2e-3)
    assert data["verdicts"] == commands.verdicts(data["policy"], data["trot"])
    assert (command_policy.parent / "commands" / "commands.png").is_file() and "commands.json" in out


@pytest.mark.slow
def test_the_robustness_suite_runs_a_policy_and_its_export_through_the_runtime(command_policy, tmp_path):
    for model, out in ((command_policy, tmp_path / "zip"), (command_policy.parent / "export" / "policy.onnx",
                                                               tmp_path / "onnx")):
        assert cli.main(["evaluate", "--suite", "robustness", "--model", str(model), "--episodes", "2",
                         "--set", "env.episode_seconds=1", "--conditions", "nominal", "weaker_servos",
                         "--out", str(out)]) == 0
        data = json.loads((out / "robustness.json").read_text())
        assert _finite(data) and data["model"] == str(model) and data["held_command"] == [0.12, 0.0]
        assert set(data["conditions"]) == {"nominal", "weaker_servos"} == set(data["verdicts"])
        assert data["in_range"] == {"nominal": True, "weaker_servos": False}
        for name, row in data["conditions"].items():
            assert set(row) == {"trot", "policy"}
            for f in row.values():
                falls = round(f["fall_rate"] * 2)
                assert sum(f["fall_causes"].values()) == falls == len(f["fall_episodes"])
        assert data["verdicts"] == robustness.verdicts(data["conditions"], "policy")
        assert (out / "robustness.png").is_file()
    # The same robots: the trot's figures do not depend on the policy beside it.
    zip_rows = json.loads((tmp_path / "zip" / "robustness.json").read_text())["conditions"]
    onnx_rows = json.loads((tmp_path / "onnx" / "robustness.json").read_text())["conditions"]
    assert {n: r["trot"] for n, r in zip_rows.items()} == {n: r["trot"] for n, r in onnx_rows.items()}
    # ONNX and PyTorch act alike (parity-checked at export): the same episodes, the same speed.
    for n in zip_rows:
        assert zip_rows[n]["policy"]["speed_mps"] == pytest.approx(onnx_rows[n]["policy"]["speed_mps"], abs=2e-3)


@pytest.mark.slow
def test_the_commands_suite_refuses_a_forward_task_policy(tmp_path, capsys):
    assert cli.main(["imitate", "--preset", "tiny", "--output-dir", str(tmp_path), "--experiment-name", "fwd",
                     "--no-live"]) == 0
    model = tmp_path / "fwd" / "bc_pretrained_policy.pth"
    capsys.readouterr()
    assert cli.main(["evaluate", "--suite", "commands", "--model", str(model)]) == 2
    assert "trained on the forward task" in capsys.readouterr().err
    assert not (tmp_path / "fwd" / "commands").exists()
    assert Path(model).is_file()
