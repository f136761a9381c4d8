"""A first run on a real PiDog: the calibration file found as the vendor finds it (sudo too) and refused when
missing or all zero, no home directory needed at import, no second process on the HAT, a lost operator input
or a dropped SSH session stopping the robot, a stand-up that a signal or a tilt ends, and a warmed-up policy.
(The same against SunFounder's own code: tests/test_vendor_code.py.)"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from deploy import cli, runtime, vendor
from deploy.commands import GamepadSource, KeyboardSource
from deploy.fake_vendor import FakeVendor
from deploy.hardware import MujocoHardware, RobotHardware
from deploy.runtime import ControlLoop, Stop, hold_stand_policy
from pidog_env.observation import CMD_VX_SCALE
from test_deploy import LIE_DEG, STAND_DEG, spec_stub

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(stand_s=0.2, lie_s=0.2, settle_s=0.06)


def passwd(table: dict[str, str]):
    def getpwnam(name):
        if name not in table:
            raise KeyError(name)
        return types.SimpleNamespace(pw_dir=table[name])
    return getpwnam


def test_the_calibration_file_is_the_one_the_vendor_reads_under_sudo_too(monkeypatch):
    monkeypatch.setattr(vendor.pwd, "getpwnam", passwd({"pi": "/home/pi", "root": "/root"}))
    conf = Path(".config") / "pidog" / "pidog.conf"
    assert vendor.vendor_conf_path({"SUDO_USER": "pi", "LOGNAME": "root", "HOME": "/root"}) == "/home/pi" / conf
    assert vendor.vendor_conf_path({"LOGNAME": "pi", "HOME": "/elsewhere"}) == "/home/pi" / conf
    assert vendor.vendor_conf_path({"SUDO_USER": "ghost", "HOME": "/tmp/h"}) == "/tmp/h" / conf   # no entry: $HOME
    monkeypatch.setattr(vendor.pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    assert vendor.vendor_conf_path({}) is None


@pytest.mark.slow
def test_the_runtime_imports_and_starts_where_the_uid_has_no_home(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import pwd\ndef _none(*a):\n    raise KeyError('no passwd entry')\npwd.getpwuid = pwd.getpwnam = _none\n")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-c", "import deploy.cli, deploy.hardware, deploy.vendor_bus; "
                           "from deploy.vendor import vendor_conf_path; print(vendor_conf_path())"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "None", proc.stderr
    spec_stub().save(tmp_path / "policy.json")
    (tmp_path / "policy.onnx").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "deploy.runtime", "--policy", "policy.onnx", "--stand-only"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr == (
        "error: no home directory to find the calibration file in; pass --conf PATH\n")


@pytest.fixture
def stand_only(tmp_path, monkeypatch):
    """`--stand-only` arguments for a policy in tmp_path; the vendor stack must not be reached."""
    spec_stub().save(tmp_path / "policy.json")
    (tmp_path / "policy.onnx").write_bytes(b"")
    monkeypatch.setattr(vendor, "PROC", tmp_path / "no-proc")

    def no_vendor():
        raise ImportError("robot_hat is not installed (the test stops here)")
    monkeypatch.setattr(vendor, "load_vendor", no_vendor)
    monkeypatch.setattr(cli, "ControlLoop", lambda *a, **k: ControlLoop(*a, **{**k, **FAST}))
    return ["--policy", str(tmp_path / "policy.onnx"), "--stand-only", "--seconds", "0.1"]


@pytest.mark.parametrize("text", [pytest.param(None, marks=pytest.mark.slow),       # also a paced dry run
                                  "", "legs_servo_offset_list = [0, 0, 0, 0, 0, 0, 0, 0]\n\n"])
def test_the_robot_refuses_a_missing_or_all_zero_calibration_unless_told(text, stand_only, tmp_path, capsys):
    conf = tmp_path / "pidog.conf"
    if text is not None:
        conf.write_text(text)
    assert cli.main([*stand_only, "--conf", str(conf)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--uncalibrated" in err and "robot_hat" not in err     # refused before the vendor
    assert cli.main([*stand_only, "--conf", str(conf), "--uncalibrated"]) == 2
    assert "robot_hat is not installed" in capsys.readouterr().err                          # told: it goes on
    if text is None:
        assert cli.main([*stand_only, "--conf", str(conf), "--dry-run"]) == 0
        assert "on the robot this run is refused without --uncalibrated" in capsys.readouterr().out


def test_a_second_process_on_the_hat_is_found_and_refused(stand_only, tmp_path, capsys, monkeypatch):
    proc = tmp_path / "proc"
    for pid, argv, links in ((812, ["python3", "/opt/app/main.py"], ["/dev/null", "/dev/i2c-1"]),
                             (813, ["bash"], ["/dev/pts/0"]),
                             (os.getpid(), [sys.executable, "-m", "deploy.runtime"], ["/dev/i2c-1"])):
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        for fd, target in enumerate(links):
            os.symlink(target, proc / str(pid) / "fd" / str(fd))
    (proc / "814").mkdir()                                                  # another user's, fds unreadable
    (proc / "814" / "cmdline").write_bytes(b"python3\0/home/pi/pidog/examples/patrol.py\0")
    real = vendor._open_files
    monkeypatch.setattr(vendor, "_open_files", lambda d: None if d.parent.name == "814" else real(d))
    users = vendor.hat_users(proc)
    assert users == ["pid 812 (python3 /opt/app/main.py) has /dev/i2c-1 open",
                     "pid 814 (python3 /home/pi/pidog/examples/patrol.py) looks like a vendor program (its open "
                     "files are readable only with sudo)"]
    monkeypatch.setattr(vendor, "PROC", proc)
    conf = tmp_path / "pidog.conf"
    conf.write_text("legs_servo_offset_list = [1, 0, 0, 0, 0, 0, 0, 0]\n\n")
    assert cli.main([*stand_only, "--conf", str(conf)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: another process drives the robot HAT: pid 812") and err.count("\n") == 1


def test_a_keyboard_at_end_of_input_or_hung_up_and_a_gamepad_gone_are_lost_input(monkeypatch):
    read, write = os.pipe()
    keys = KeyboardSource((0.0, 0.12), (-0.5, 0.5), fd=read)
    os.write(write, b"ww")
    os.close(write)
    assert keys.poll() == pytest.approx((0.04, 0.0)) and keys.lost == "end of input on the terminal"
    os.close(read)
    master, slave = pty.openpty()
    keys = KeyboardSource((0.0, 0.12), (-0.5, 0.5), fd=slave)
    os.close(master)                                                        # the SSH session drops
    keys.poll()
    assert keys.lost and keys.lost.startswith(("the terminal is gone", "end of input"))
    keys.close()
    os.close(slave)

    class Gone:
        name = "pad"

        def capabilities(self):
            return {3: [(1, types.SimpleNamespace(min=0, max=255))]}

        def read_one(self):
            raise OSError(19, "No such device")

        def close(self):
            raise OSError(19, "No such device")
    codes = types.SimpleNamespace(EV_ABS=3, EV_KEY=1, ABS_X=0, ABS_Y=1, ABS_RX=3, BTN_SOUTH=304, BTN_EAST=305,
                                  BTN_START=315)
    monkeypatch.setitem(sys.modules, "evdev", types.SimpleNamespace(ecodes=codes, InputDevice=lambda p: Gone(),
                                                                     list_devices=lambda: ["/dev/input/event0"]))
    pad = GamepadSource((0.0, 0.12), (-0.5, 0.5))
    pad.poll()
    assert pad.lost == "the gamepad is gone (No such device)"
    pad.close()


class Losing:
    """A command source: 0.08 m/s forward, lost after `after` polls."""

    quit = False

    def __init__(self, after: int):
        self.after, self.polls, self.lost = after, 0, None

    def poll(self):
        self.polls += 1
        if self.polls > self.after:
            self.lost = "the gamepad is gone (No such device)"
        return (0.08, 0.0)


def recording(seen):
    def act(obs):
        seen.append(np.array(obs, copy=True))
        return np.zeros(8, dtype=np.float32)
    return act


@pytest.mark.parametrize("how", ["input lost", "SIGHUP"])
def test_a_lost_input_or_a_dropped_session_zeroes_the_command_then_lies_down(how):
    from pidog_env import config_tree
    from pidog_env.config import EnvConfig
    spec, seen = cli.trot_gait(command=True)[0], []                   # a command-task spec (no torch needed)
    lo = spec.frame_layout["command"][0]
    hw = MujocoHardware(config=config_tree.apply(EnvConfig(), "command.enabled", True))
    source = Losing(after=10 if how == "input lost" else 10 ** 6)

    def act(obs):
        if how == "SIGHUP" and len(seen) == 10:
            os.kill(os.getpid(), signal.SIGHUP)
        return recording(seen)(obs)
    loop = ControlLoop(spec, act, hw, realtime=False, commands=source)
    stop = loop.run(5.0)
    commands = np.array([o[lo] / CMD_VX_SCALE for o in seen])
    before = 10 if how == "input lost" else 11                                      # the signal came in tick 11
    assert np.allclose(commands[:before], 0.08) and np.all(commands[before:] == 0.0)   # zero from then on
    assert len(commands) == before + 25                                             # for 0.5 s, then it lay down
    if how == "SIGHUP":
        assert stop == Stop("signal", "SIGHUP received (the terminal closed): zero command for 0.5 s, then lay down")
    else:
        assert stop == Stop("safety", "command input lost (the gamepad is gone (No such device)): zero command for "
                                      "0.5 s, then lay down")
    assert np.allclose(hw.poses[-1], LIE_DEG)                                       # it lay down
    hw.close()


@pytest.mark.slow
def test_a_hang_up_during_the_lie_down_does_not_cut_it_short(tmp_path):
    fake = FakeVendor()
    conf = tmp_path / "pidog.conf"
    conf.write_text("legs_servo_offset_list = [1, -1, 0, 0, 0, 0, 0, 2]\n")
    loop = ControlLoop(spec_stub(), hold_stand_policy(spec_stub()), RobotHardware(fake.stack(), conf),
                       stand_s=0.2, lie_s=0.4, settle_s=0.06)
    lie_down = loop.lie_down

    def hung_up_meanwhile():
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGHUP)).start()
        lie_down()
    loop.lie_down = hung_up_meanwhile
    assert loop.run(0.2) == Stop("done", "time limit reached")
    assert np.abs(fake.leg_deg - (LIE_DEG + [1, -1, 0, 0, 0, 0, 0, 2])).max() < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("what", ["signal", "tilt"])
def test_the_stand_up_ends_on_a_signal_or_a_tilt_and_lies_down_from_where_it_is(what, tmp_path):
    def world(t):                                   # level; from 0.55 s (during the stand-up) falling onto its side
        if what == "tilt" and t > 0.55:
            return (0.0, 9.81, 0.0), (3.0, 0.0, 0.0)
        return (0.0, 0.0, 9.81), (0.0, 0.0, 0.0)
    fake = FakeVendor(world=world)
    conf = tmp_path / "pidog.conf"
    conf.write_text("legs_servo_offset_list = [0, 0, 0, 0, 0, 0, 0, 1]\n")
    loop = ControlLoop(spec_stub(), hold_stand_policy(spec_stub()), RobotHardware(fake.stack(), conf),
                       stand_s=1.0, lie_s=0.3, settle_s=0.06)
    if what == "signal":
        threading.Timer(0.55, os.kill, (os.getpid(), signal.SIGINT)).start()
    stop = loop.run(5.0)
    assert stop == (Stop("signal", "SIGINT received during the stand-up") if what == "signal" else
                    Stop("safety", "tilt beyond the fall limit during the stand-up"))
    knee = [v for e in fake.events if e[0] == "write" and e[1] == 3 for v in [e[2]]]   # LF knee channel
    from deploy.vendor import servo_register_value
    assert servo_register_value(STAND_DEG[1]) not in knee                  # it never got to the stand pose
    assert np.abs(fake.leg_deg - (LIE_DEG + [0, 0, 0, 0, 0, 0, 0, 1])).max() < 0.5
    assert not any(e[0] == "infer" for e in fake.events)


@pytest.mark.slow
def test_the_policy_is_warmed_up_before_the_robot_stands(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    spec = spec_stub()
    graph = helper.make_graph(                                             # a policy that always holds the stand
        [helper.make_node("MatMul", ["obs", "w"], ["action"])], "zero",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", spec.obs_size])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor("w", TensorProto.FLOAT, [spec.obs_size, 8], [0.0] * (spec.obs_size * 8))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "policy.onnx")
    policy = runtime.OnnxPolicy(tmp_path / "policy.onnx", spec)
    fake, said = FakeVendor(), []
    run = policy.session.run
    policy.session.run = lambda *a, **k: (fake.record("infer"), run(*a, **k))[1]
    conf = tmp_path / "pidog.conf"
    conf.write_text("legs_servo_offset_list = [0, 0, 0, 0, 0, 0, 0, 1]\n")
    loop = ControlLoop(spec, policy, RobotHardware(fake.stack(), conf), say=said.append, **FAST)
    assert loop.run(0.1).kind == "done"
    kinds = [e[0] for e in fake.events]
    construction = 12                                                       # the vendor's start-up writes
    first_write = [i for i, k in enumerate(kinds) if k == "write"][construction]
    assert kinds[:first_write].count("infer") == runtime.WARM_UP_RUNS        # before the stand-up's first write
    assert kinds.count("infer") == runtime.WARM_UP_RUNS + 5 and any("policy warmed up" in s for s in said)


def test_the_trot_runs_through_the_runtime_and_slower_when_told(monkeypatch, capsys):
    made = []
    make = cli.make_hardware
    monkeypatch.setattr(cli, "make_hardware", lambda *a: made.append(make(*a)) or made[-1])
    monkeypatch.setattr(cli, "ControlLoop", lambda *a, **k: ControlLoop(*a, **{**k, "realtime": False}))
    distance = {}
    for commands in ([], ["--commands", "0.03,0"]):
        assert cli.main(["--gait", "trot", "--hardware", "sim", "--seconds", "3", *commands]) == 0
        assert "stopped: time limit reached" in capsys.readouterr().out
        distance[bool(commands)] = made[-1].info["forward_distance"]
        assert not made[-1].terminated
    assert distance[False] > 0.2 and 0.02 < distance[True] < distance[False] / 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--gait", "trot", "--replay", "run.npz"])
    assert exit_info.value.code == 2 and "pass --policy" in capsys.readouterr().err
