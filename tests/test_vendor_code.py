"""The runtime against SunFounder's own code: the unmodified pidog 1.3.13 and robot-hat 2.5.5 Python packages
(../shared/vendor) run over an emulated I2C bus (deploy/vendor_bus.py: a fake HAT MCU that records the PWM
register writes and serves ADC reads, a fake SH3001 that serves register reads from a world function or
from MuJoCo). Stand-up, policy ticks, lie-down, signals, --imu-check, the battery watchdog, the
calibration file under sudo, and faults on the bus, each ending in the documented safe state."""

from __future__ import annotations

import functools
import importlib
import math
import os
import pwd
import signal
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from deploy import cli, runtime
from deploy.hardware import RobotHardware
from deploy.runtime import ControlLoop, Stop, hold_stand_policy
from deploy import vendor
from deploy.vendor_bus import MujocoWorld, VendorEmulation
from pidog_env import robot
from test_deploy import LIE_DEG, spec_stub

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT.parent / "shared" / "vendor"
pytestmark = [
    pytest.mark.vendor_code,
    pytest.mark.skipif(not (VENDOR / "pidog" / "pidog").is_dir() or not (VENDOR / "robot-hat" / "robot_hat").is_dir(),
                       reason=f"the vendor sources are not in {VENDOR} (../shared/vendor: pidog 1.3.13 and "
                              "robot-hat 2.5.5, see its README): the vendor-code tests need them"),
]
FAST = dict(stand_s=0.16, lie_s=0.16, settle_s=0.06)   # 8 steps: lie <-> stand at 428 deg/s
OFFSETS = [1.5, -1.0, 0.5, 0.0, 2.0, 0.0, -2.0, 0.5]      # LH / RH hip +-2: the envelope's edge goes past +-90
CHECK_SAMPLES = 5


@pytest.fixture(scope="module")
def emulation():
    emu = VendorEmulation(VENDOR)
    emu.load()
    yield emu
    emu.close()
    assert "robot_hat" not in sys.modules and "smbus2" not in sys.modules      # nothing left for other tests


@pytest.fixture
def emu(emulation, tmp_path, monkeypatch):
    emulation.reset()
    monkeypatch.setattr("deploy.vendor.PROC", tmp_path / "no-proc")     # the HAT check sees no other process
    monkeypatch.setattr(runtime, "START_CHECK_SAMPLES", CHECK_SAMPLES)   # the start-up check, in 0.1 s
    yield emulation
    emulation.bus.hang = False


def write_conf(path: Path, legs=OFFSETS, trailing: str = "\n\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# robot-hat config and calibration value of robots\n\n"
                    f"legs_servo_offset_list = {list(legs)}{trailing}")
    return path


def vendor_register(angle: float) -> int:
    """robot_hat's arithmetic, written out: clamp to +-90, 500..2500 us, 4095 counts in 20 ms."""
    angle = min(max(angle, -90), 90)
    return int((500 + (angle + 90) * 2000 / 180) / 20000 * 4095)


def leg_writes(emu) -> list[list[int]]:
    """The leg channels' register values, one row per complete set of 8 leg writes after the vendor's
    start-up (which writes the legs one by one, in its own order)."""
    pins = list(robot.LEG_PINS)
    values = [v for _, ch, v in emu.mcu.writes if ch in pins][len(pins):]
    channels = [ch for _, ch, _ in emu.mcu.writes if ch in pins][len(pins):]
    assert channels == pins * (len(channels) // 8)                        # the vendor's servo_list order, 8 a tick
    return [values[i:i + 8] for i in range(0, len(values), 8)]


def at_pose(emu, pose, offsets=OFFSETS) -> bool:
    return [emu.mcu.pulses.get(ch) for ch in robot.LEG_PINS] == [vendor_register(a + o) for a, o in zip(pose, offsets)]


class Hooked:
    """A policy (hold the stand, or `action`) that runs `hook(call)` on each call."""

    def __init__(self, hook=None, action=None):
        self.hook, self.calls = hook, 0
        self.action = hold_stand_policy(spec_stub())(None) if action is None else np.asarray(action, np.float32)

    def __call__(self, obs):
        self.calls += 1
        if self.hook:
            self.hook(self.calls)
        return self.action


@pytest.mark.slow
def test_stand_ticks_and_lie_down_write_the_model_targets_through_the_vendors_offset_and_clamp(emu, tmp_path):
    hw = RobotHardware(emu.stack, write_conf(tmp_path / "pidog.conf"))
    # The vendor's start-up: MCU reset through its pin, then each leg to the lie pose (plus offset), in its order.
    assert emu.pin_log == ["set 5 op dl", "set 5 op dh"] and emu.mcu.resets == 1
    first = [(ch, v) for _, ch, v in emu.mcu.writes][:8]
    assert first == [(robot.LEG_PINS[i], vendor_register(LIE_DEG[i] + OFFSETS[i])) for i in robot.LEG_INIT_ORDER]
    assert hw.applied_offsets()["legs_servo_offset_list"] == OFFSETS and hw.offset_problem() is None
    # A policy that pushes the hind hips past the envelope (stand + 45 deg > 90): clipped to +-90, and the
    # vendor's own clamp takes the +-2 deg offsets there back to +-90.
    action = np.zeros(8)
    action[[4, 6]] = 1.0
    action[1] = -0.3
    loop = ControlLoop(spec_stub(), Hooked(action=action), hw, log=True, **FAST)
    assert loop.run(0.3) == Stop("done", "time limit reached")
    rows = leg_writes(emu)
    stand_up, settle, lie = 8, 3, 8
    ticks = rows[stand_up + settle:len(rows) - lie]
    commands = np.asarray(loop.log["command_deg"])
    assert len(ticks) == len(commands) == 15
    for sent, wrote in zip(commands, ticks):                           # every tick, every channel
        assert wrote == [vendor_register(a + o) for a, o in zip(sent, OFFSETS)]
    # The last ticks hold the model's joint targets for that action (the env's: stand + 45 deg x action,
    # clipped to the envelope), within one register step (0.44 deg) once the offsets are taken off.
    targets = robot.model_rad_to_servo_deg(robot.action_to_leg_rad(action.astype(np.float32)))
    assert targets[4] == 90.0 and targets[6] == -90.0
    np.testing.assert_allclose(commands[-1], targets, atol=1e-9)
    decoded = (np.asarray(ticks[-1]) / 4095 * 20000 - 500) * 180 / 2000 - 90 - OFFSETS
    np.testing.assert_allclose(decoded[[0, 1, 2, 3, 5, 7]], targets[[0, 1, 2, 3, 5, 7]], atol=0.45)
    assert ticks[-1][4] == vendor_register(90) and ticks[-1][6] == vendor_register(-90)   # 92 and -92: clamped
    assert at_pose(emu, LIE_DEG) and loop.safety.interventions == 0 and not any(loop.log["guard"])


@pytest.mark.slow
def test_under_sudo_the_invoking_users_calibration_is_read_as_the_vendor_reads_it(emu, tmp_path, monkeypatch, capsys):
    user_home, root_home = tmp_path / "home" / "pi", tmp_path / "root"
    root_home.mkdir()
    write_conf(user_home / ".config" / "pidog" / "pidog.conf")
    monkeypatch.setenv("HOME", str(root_home))
    monkeypatch.setenv("LOGNAME", "root")
    monkeypatch.setenv("SUDO_USER", "pi")
    emu.set_users({"pi": str(user_home)})                                 # the fake getent the vendor asks
    real = pwd.getpwnam
    monkeypatch.setattr(pwd, "getpwnam", lambda name: (type("Entry", (), {"pw_dir": str(user_home)})
                                                       if name == "pi" else real(name)))
    pidog_module = importlib.reload(sys.modules["pidog.pidog"])           # its config_file, under this environment
    assert Path(pidog_module.config_file) == vendor.vendor_conf_path() == user_home / ".config" / "pidog" / "pidog.conf"
    spec_stub().save(tmp_path / "policy.json")
    (tmp_path / "policy.onnx").write_bytes(b"")
    monkeypatch.setattr(cli, "ControlLoop", functools.partial(ControlLoop, **FAST))
    assert cli.main(["--policy", str(tmp_path / "policy.onnx"), "--stand-only", "--seconds", "0.1"]) == 0
    out = capsys.readouterr().out
    assert f"legs {OFFSETS}" in out and str(user_home / ".config" / "pidog" / "pidog.conf") in out
    assert at_pose(emu, LIE_DEG) and not (root_home / ".config").exists()   # nothing created under root's home
    importlib.reload(sys.modules["pidog.pidog"])


@pytest.mark.parametrize("case", ["missing", "all zero", "last line",
                                  pytest.param("uncalibrated", marks=pytest.mark.slow)])
def test_a_calibration_the_servos_would_not_get_is_refused_before_the_robot_stands(case, emu, tmp_path, monkeypatch,
                                                                                    capsys):
    conf = tmp_path / "pidog.conf"
    if case == "all zero":
        write_conf(conf, [0] * 8)
    elif case == "last line":                                             # robot_hat's fileDB skips a file's last line
        write_conf(conf, trailing="\n")
    spec_stub().save(tmp_path / "policy.json")
    (tmp_path / "policy.onnx").write_bytes(b"")
    monkeypatch.setattr(cli, "ControlLoop", functools.partial(ControlLoop, **FAST))
    args = ["--policy", str(tmp_path / "policy.onnx"), "--stand-only", "--seconds", "0.1", "--conf", str(conf)]
    code = cli.main(args + (["--uncalibrated"] if case == "uncalibrated" else []))
    out, err = capsys.readouterr()
    if case == "uncalibrated":                                            # said explicitly: it runs
        assert code == 0 and "stopped: time limit reached" in out
        return
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    if case == "last line":                                               # printed: what the servo objects hold
        assert "the vendor library applies legs_servo_offset_list [0.0, 0.0" in err and "end the file" in err
        assert "legs [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]" in out
        assert len(leg_writes(emu)) == 0                                  # it never stood
    else:
        assert "--uncalibrated" in err and emu.mcu.writes == [] and emu.pin_log == []   # nothing moved at all


def test_the_imu_words_are_decoded_right_where_the_vendors_decoder_is_off_by_256(emu, tmp_path):
    from pidog.sh3001 import bytes_toint
    wrong = [v for v in range(65536) if bytes_toint(v >> 8, v & 0xFF) != (v - 65536 if v >= 32768 else v)]
    assert len(wrong) == 64 and all(bytes_toint(v >> 8, v & 0xFF) - (v - 65536) == 256 for v in wrong)
    raw = list(range(65536)) + [0, 0]                                      # every raw word, six a block
    decoded = [w for i in range(0, len(raw), 6) for part in vendor.decode_imu_block(list(struct.pack("<6H", *raw[i:i + 6])))
               for w in part]
    assert decoded[:65536] == [v - 65536 if v >= 32768 else v for v in range(65536)]
    # Through the bus: the chip's gyro x word is -512, which the vendor decodes as -256 (0.27 rad/s off).
    hw = RobotHardware(emu.stack, write_conf(tmp_path / "pidog.conf"))
    emu.imu.raw = (-4096, 3, -5, -512, 0, 0)
    acc, gyro = hw.read_imu()
    assert hw.imu._sh3001_getimudata()[1][0] == -256                      # the vendor's own reading
    np.testing.assert_allclose(gyro, [0.0, 0.0, math.radians(512 / 16.384)], atol=1e-12)   # body z = -chip x
    np.testing.assert_allclose(acc, [-3 * 9.81 / 4096, -5 * 9.81 / 4096, 9.81], atol=1e-2)


def faulted(emu, fault):
    """Policy hook: the fault from the 4th tick on."""
    def hook(n):
        if n == 4:
            fault(emu)
    return hook


FAULTS = {
    # name: (fault, expected stop message start, safe state)
    "write errors the vendor's retries absorb": (lambda e: setattr(e.mcu, "fail_writes", 4), "time limit reached", "lying"),
    "write errors that persist": (lambda e: setattr(e.mcu, "fail_writes", -1),
                                  "servo writes failed on 3 ticks in a row (I2C); the lie-down's servo writes failed: "
                                  "servos released", "limp"),
    "IMU read errors": (lambda e: setattr(e.imu, "fail_reads", -1), "IMU: no new sample for 150 ms", "lying"),
    "stuck IMU": (lambda e: setattr(e.imu, "stuck", True), "IMU: no new sample for 150 ms", "lying"),
    "dead bus": (lambda e: setattr(e.bus, "dead", True),
                 "servo writes failed on 3 ticks in a row (I2C); the lie-down's servo writes failed: servos released",
                 "limp"),
    "hanging bus": (lambda e: setattr(e.bus, "hang", True),
                    "a tick was still running after 250 ms (a hung I2C bus?); the lie-down did not finish within "
                    "1.2 s; the bus hangs: servos released", "limp"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_on_the_bus_end_in_the_documented_safe_state(name, emu, tmp_path):
    fault, message, state = FAULTS[name]
    hw = RobotHardware(emu.stack, write_conf(tmp_path / "pidog.conf"))
    loop = ControlLoop(spec_stub(), Hooked(faulted(emu, fault)), hw, **FAST)
    stop = loop.run(0.5 if state == "lying" and name.startswith("write") else 3.0)
    emu.bus.hang = False
    assert stop.message.startswith(message), stop
    if name == "hanging bus":                     # the tick watchdog first, then the lie-down's deadline
        assert stop.kind == "aborted" and stop.exit_code == 3
    if state == "lying":
        assert at_pose(emu, LIE_DEG) and emu.mcu.resets == 1
    else:                                          # released through the MCU's reset pin, a GPIO: no pulse left
        assert emu.limp() and emu.pin_log[-2:] == ["set 5 op dl", "set 5 op dh"] and emu.mcu.resets == 2


@pytest.mark.slow
def test_battery_sag_read_through_the_adc_lies_down(emu, tmp_path, monkeypatch):
    monkeypatch.setattr(robot, "BATTERY_LOW_SECONDS", 0.5)                # the rule as on the robot, sooner
    hw = RobotHardware(emu.stack, write_conf(tmp_path / "pidog.conf"))
    assert hw.battery_voltage() == pytest.approx(8.0, abs=0.01)             # A4 x3, through robot_hat's ADC
    loop = ControlLoop(spec_stub(), Hooked(faulted(emu, lambda e: setattr(e.mcu, "battery_v", 6.1))), hw, **FAST)
    stop = loop.run(5.0)
    assert stop.kind == "safety" and stop.message.startswith("battery below 6.4 V for 0.5 s (last 6.10 V)")
    assert 50 <= loop.stats.summary()["ticks"] <= 75 and at_pose(emu, LIE_DEG)   # read every 25 ticks, low from 25


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signals_lie_the_robot_down(signum, emu, tmp_path):
    hw = RobotHardware(emu.stack, write_conf(tmp_path / "pidog.conf"))
    def hook(n):
        if n == 5:
            os.kill(os.getpid(), signum)
        if n == 6 and signum == signal.SIGHUP:
            os.kill(os.getpid(), signum)            # a closing terminal sends it twice: still one lie-down
    loop = ControlLoop(spec_stub(), Hooked(hook), hw, **FAST)
    stop = loop.run(3.0)
    assert stop == Stop("signal", f"{signal.Signals(signum).name} received") and at_pose(emu, LIE_DEG)


def imu_world(emu):
    """Level through the start-up check (CHECK_SAMPLES reads) and the first read after it; then, from the next read on,
    the nose down and back within 0.2-0.5 s, the left side down within 0.7-1.0 s, a left turn within 1.2-1.5 s."""
    start: list[float] = []

    def bump(t, t0):
        if not t0 <= t <= t0 + 0.3:
            return 0.0, 0.0
        x = (t - t0) / 0.3 * math.pi
        return 0.6 * math.sin(x) ** 2, 0.6 * math.pi / 0.3 * math.sin(2 * x)

    def world(t):
        if emu.imu.reads <= CHECK_SAMPLES + 1:
            return (0.0, 0.0, 9.81), (0.0, 0.0, 0.0)
        start[:] = start or [t]
        pitch, pitch_rate = bump(t - start[0], 0.2)
        roll, roll_rate = bump(t - start[0], 0.7)
        _, yaw_rate = bump(t - start[0], 1.2)
        acc = 9.81 * np.array([-math.sin(pitch), -math.sin(roll), math.cos(pitch) * math.cos(roll)])
        return tuple(acc), (-roll_rate, pitch_rate, yaw_rate)
    return world


@pytest.mark.slow
def test_imu_check_through_the_vendor_code(emu, tmp_path, capsys):
    spec_stub().save(tmp_path / "policy.json")
    (tmp_path / "policy.onnx").write_bytes(b"")
    emu.reset(world=imu_world(emu))
    code = cli.main(["--policy", str(tmp_path / "policy.onnx"), "--imu-check", "--conf",
                     str(write_conf(tmp_path / "pidog.conf"))])
    out = capsys.readouterr().out
    assert code == 0 and out.count("PASS") == 3 and "IMU check passed" in out, out
    assert "gyro_z > 0 while turning left" in out and len(leg_writes(emu)) == 0       # nothing but the start-up moved


@pytest.mark.slow
def test_a_whole_episode_through_the_vendor_code_walks_and_observes_as_the_env(emu, tmp_path):
    from pidog_env import config_tree
    from pidog_env.config import EnvConfig
    from pidog_env.gaits import TrotGait
    from training.export import spec_for
    cfg = config_tree.apply(EnvConfig(), "episode_seconds", 4.0)
    hw = RobotHardware(emu.stack, write_conf(tmp_path / "pidog.conf"))
    world = MujocoWorld(emu, OFFSETS, config=cfg, seed=0)
    env_obs = []
    step = world.env.step
    world.env.step = lambda a: (lambda out: env_obs.append(out[0]) or out)(step(a))
    try:
        loop = ControlLoop(spec_for(cfg, "test"), TrotGait.for_config(cfg), hw, realtime=False, log=True,
                           stand_s=0.3, lie_s=0.1, settle_s=0.0, say=lambda line: None)
        assert loop.run(cfg.episode_seconds) == Stop("done", "time limit reached")
    finally:
        world.close()
    ours = np.asarray(loop.log["obs"])
    assert len(ours) == cfg.episode_steps and world.steps >= cfg.episode_steps - 1 and not world.fell
    assert world.info["forward_distance"] > 0.2                                        # it trots through the vendor code
    # Tick k's observation is the env's after step k-1, up to the IMU's and the PWM's quantization.
    np.testing.assert_allclose(ours[1:], np.asarray(env_obs)[:len(ours) - 1], atol=0.011)
    np.testing.assert_allclose(np.asarray(world.targets[:len(ours) - 1]), np.asarray(loop.log["command_deg"])[:-1],
                               atol=0.45)                                         # the servos got the commands
