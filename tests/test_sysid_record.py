"""The on-robot recorder (deploy/sysid.py): the protocol stays inside the robot's safety rules, and a dry run
loads no vendor code, moves nothing and still writes the complete log."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploy import sysid
from deploy.safety import LegClearance
from pidog_env import robot

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("leg", robot.LEGS)
def test_the_protocol_stays_in_the_envelope_with_the_legs_apart(leg):
    plan = sysid.build_plan(leg)
    commands, segment = sysid.plan_commands(leg, plan)
    lo, hi = robot.LEG_SERVO_LIMITS_DEG[:, 0], robot.LEG_SERVO_LIMITS_DEG[:, 1]
    assert ((commands >= lo - 1e-9) & (commands <= hi + 1e-9)).all()
    guard = LegClearance(robot.LEG_SIGNS, robot.LEG_SERVO_LIMITS_DEG)
    assert all(guard.clear(c) for c in commands[::2])
    i = robot.LEGS.index(leg)
    others = np.delete(commands, [2 * i, 2 * i + 1], axis=1)
    assert np.allclose(others, np.delete(robot.POSES_DEG["stand"], [2 * i, 2 * i + 1]))     # the others stand
    assert {s.kind for s in plan} == set(sysid.SEGMENT_KINDS)
    assert min(len(s.targets) for s in plan) * sysid.DT >= sysid.MIN_SEGMENT_S
    q = np.stack([s.targets for s in plan if s.kind == "slew"])          # 60-90 deg slews
    spans = np.ptp(q, axis=1).max(axis=1)
    assert spans.min() >= 60 and spans.max() <= 90
    chirp = next(s.targets for s in plan if s.kind == "chirp")
    assert np.abs(np.diff(chirp, axis=0)).max() / sysid.DT <= robot.LEG_SPEED_DEG_S + 1e-9


def test_the_trot_replay_is_the_envs_trot():
    from pidog_env.config import EnvConfig
    from pidog_env.gaits import TrotGait
    cfg = EnvConfig()
    q = sysid.trot_targets("RH", 1.0)
    phase = np.arange(len(q)) * cfg.ctrl_dt / cfg.gait_period
    a = TrotGait.for_config(cfg).action_at(phase[:, None])[:, 0]
    want = np.rad2deg(robot.action_to_leg_rad(a))[:, 6:8]
    limited = want.copy()                                   # the vendor's 428 deg/s, as the env limits commands
    for k in range(1, len(limited)):
        limited[k] = limited[k - 1] + np.clip(want[k] - limited[k - 1], -428 * 0.02, 428 * 0.02)
    assert np.allclose(q, limited) and np.abs(q - want).mean() < 0.2


def _fake_vendor(tmp_path: Path) -> Path:
    """Packages named like the vendor's that leave a mark when anything imports them."""
    site = tmp_path / "site"
    for name in ("pidog", "robot_hat", "smbus", "smbus2"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(
            f"open({str(tmp_path / 'imported')!r}, 'a').write({name!r} + '\\n')\nraise ImportError('fake {name}')\n")
    return site


def _run(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": f"{_fake_vendor(tmp_path)}{os.pathsep}{ROOT}", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "deploy.sysid", "record", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)


@pytest.mark.slow
def test_a_dry_run_imports_no_vendor_code_moves_nothing_and_writes_the_log(tmp_path):
    proc = _run(tmp_path, "--leg", "RF", "--out", "log.npz", "--dry-run", "--quick")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "imported").exists()
    assert "[dry-run]" in proc.stdout and "chest strip on" in proc.stdout
    with np.load(tmp_path / "log.npz") as log:
        assert set(log.files) == set(sysid.LOG_KEYS)
        commands, segment = sysid.plan_commands("RF", sysid.build_plan("RF", quick=True))
        assert np.array_equal(log["command_deg"], commands) and np.array_equal(log["segment"], segment)
        assert len(log["flash_t"]) == len(log["segment_kind"]) == segment.max() + 1
        assert np.all(np.diff(log["t"]) > 0) and np.all(np.diff(log["flash_t"]) > 0)
        assert json.loads(str(log["meta"]))["dry_run"] is True


@pytest.mark.slow
def test_the_robot_path_does_import_the_vendor_code(tmp_path):
    """The check above can fail: without --dry-run the recorder reaches for the vendor's libraries."""
    (tmp_path / ".config" / "pidog").mkdir(parents=True)
    (tmp_path / ".config" / "pidog" / "pidog.conf").write_text("legs_servo_offset_list = [1, 0, 0, 0, 0, 0, 0, 0]\n\n")
    proc = _run(tmp_path, "--leg", "RF", "--out", "log.npz", "--conf", str(tmp_path / ".config/pidog/pidog.conf"))
    assert proc.returncode == 2 and (tmp_path / "imported").exists()
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "log.npz").exists()


@pytest.mark.parametrize("args,says", [(["--leg", "XX", "--out", "a.npz"], "--leg"),
                                       (["--leg", "LF", "--out", "a.txt", "--dry-run"], ".npz"),
                                       (["--leg", "LF", "--out", "missing/a.npz", "--dry-run"], "does not exist")])
def test_bad_arguments_are_one_line_and_exit_2(args, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sysid.main(["record", *args])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and says in err and len(err.splitlines()) == 1
