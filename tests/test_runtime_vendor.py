"""The robot runtime against a recording fake of the vendor stack (deploy/fake_vendor.py): what it
constructs, the order of each tick, and that every failure ends lying down (or exiting) in bounded time."""

import math
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from deploy.fake_vendor import FakeVendor, still_level
from deploy.hardware import DryRunHardware, RobotHardware
from deploy.cli import main
from deploy.imu_check import imu_check
from deploy.runtime import ControlLoop, Stop, hold_stand_policy
from deploy.vendor import servo_register_value, version_warnings
from pidog_env import robot
from test_deploy import LIE_DEG, STAND_DEG, spec_stub

FAST = dict(stand_s=0.2, lie_s=0.2, settle_s=0.1)      # short pose moves keep these tests quick


def robot_with(vendor: FakeVendor, tmp_path) -> RobotHardware:
    conf = tmp_path / "pidog.conf"
    conf.write_text("legs_servo_offset_list = [1, -1, 0, 0, 0, 0, 0, 2]\n")
    return RobotHardware(vendor.stack(), conf)


class Recorder:
    """A stand-holding policy that records each call in the fake's event log and runs `hook(tick)`."""

    def __init__(self, vendor: FakeVendor, hook=None):
        self.vendor, self.hook, self.calls, self.threads = vendor, hook, 0, set()
        self.action = hold_stand_policy(spec_stub())(None)

    def __call__(self, obs):
        self.vendor.record("infer")
        self.threads |= {t.name for t in threading.enumerate()}
        self.calls += 1
        if self.hook:
            self.hook(self.calls)
        return self.action


def legs_at(vendor, pose):
    return np.abs(vendor.leg_deg - (pose + np.array([1, -1, 0, 0, 0, 0, 0, 2]))).max() < 0.5    # offsets applied


def test_construction_is_the_vendors_minus_its_threads(tmp_path):
    fake = FakeVendor()
    hw = robot_with(fake, tmp_path)
    kinds = [e[0] for e in fake.events]
    assert kinds[0] == "reset_mcu" and [e[1] for e in fake.events if e[0] == "robot_init"] == ["legs", "head", "tail"]
    assert ("imu_config", 0x03) in [e[:2] for e in fake.events]                  # +-8 g, not the vendor's 2 g
    assert legs_at(fake, LIE_DEG)                                                 # the vendor's start-up pose
    first_leg_writes = [e[1] for e in fake.events if e[0] == "write"][:8]
    assert first_leg_writes == [robot.LEG_PINS[i] for i in robot.LEG_INIT_ORDER]  # one by one, vendor order
    acc, gyro = hw.read_imu()
    np.testing.assert_allclose(acc, [0, 0, 9.81], atol=0.02)
    np.testing.assert_allclose(gyro, [0, 0, 0], atol=0.01)
    assert threading.active_count() == 1


def test_servo_register_values_are_the_vendors():
    # robot_hat Servo.angle: 500..2500 us over -90..90 deg, int(us / 20000 * 4095)
    assert [servo_register_value(a) for a in (-90, 0, 90, 120)] == [102, 307, 511, 511]


def test_no_vendor_thread_runs_and_each_tick_reads_the_imu_then_infers_then_writes(tmp_path):
    fake = FakeVendor()
    policy = Recorder(fake)
    loop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST)
    assert loop.run(0.5) == Stop("done", "time limit reached")
    assert policy.threads == {"MainThread"}
    start = next(i for i, e in enumerate(fake.events) if e[0] == "infer")
    kinds = [e[0] for e in fake.events[start:]]
    ticks = kinds[:kinds.index("battery")]                                       # the first 24 full ticks
    assert ticks[:9] == ["infer"] + ["write"] * 8                                # the first tick acts on start()'s read
    body = ticks[9:]
    assert body == ["imu", "infer", *["write"] * 8] * (len(body) // 10) and len(body) >= 200
    assert legs_at(fake, LIE_DEG)


@pytest.mark.slow
def test_start_up_interpolates_over_the_requested_seconds_and_settles_before_the_policy(tmp_path):
    fake = FakeVendor()
    policy = Recorder(fake)
    loop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path))            # default 1.5 s moves, 0.75 s settle
    loop.run(0.2)
    writes = [(e[-1], e[1], e[2]) for e in fake.events if e[0] == "write"][8 + 3 + 1:]   # after the vendor's init
    first_infer = next(e[-1] for e in fake.events if e[0] == "infer")
    stand_writes = [t for t, ch, v in writes if t < first_infer]
    assert 2.2 <= stand_writes[-1] - stand_writes[0] <= 2.6                      # 1.5 s move + 0.75 s settle
    lf_knee = [v for t, ch, v in writes if ch == robot.LEG_PINS[1] and t < first_infer]
    assert max(abs(np.diff(lf_knee))) <= 2                                      # small steps (~1 deg), no jump


@pytest.mark.slow
def test_dry_run_loads_no_vendor_library_and_moves_nothing(tmp_path, capsys, monkeypatch):
    import deploy.vendor
    monkeypatch.setattr(deploy.vendor, "load_vendor", lambda: pytest.fail("dry run loaded the vendor stack"))
    spec_stub().save(tmp_path / "policy.json")
    (tmp_path / "policy.onnx").write_bytes(b"")
    code = main(["--policy", str(tmp_path / "policy.onnx"), "--dry-run", "--stand-only", "--seconds", "0.2",
                 "--conf", str(tmp_path / "missing.conf")])
    out = capsys.readouterr().out
    assert code == 0 and "[dry-run] legs" in out and "has no legs_servo_offset_list" in out
    assert "robot_hat" not in sys.modules and "pidog" not in sys.modules


@pytest.mark.slow
def test_a_stalled_imu_lies_down_within_150_ms(tmp_path):
    fake = FakeVendor()
    policy = Recorder(fake, hook=lambda n: setattr(fake, "imu_stalled", n >= 20))
    stop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST).run(5.0)
    assert stop == Stop("safety", "IMU: no new sample for 150 ms")
    assert 20 <= policy.calls <= 20 + 0.150 / 0.02 + 1
    assert legs_at(fake, LIE_DEG)


@pytest.mark.slow
def test_low_battery_refuses_to_stand_and_lies_down_when_it_stays_low(tmp_path):
    fake = FakeVendor(battery_v=6.8)
    policy = Recorder(fake)
    stop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST).run(1.0)
    assert stop.kind == "refused" and "6.80 V is below 7.0 V" in stop.message and stop.exit_code == 2
    assert policy.calls == 0 and legs_at(fake, LIE_DEG)
    assert not any(abs(v - servo_register_value(STAND_DEG[1] - 1)) < 1 for e in fake.events if e[0] == "write"
                   for v in [e[2]] if e[1] == robot.LEG_PINS[1])             # the LF knee never went to stand
    fake = FakeVendor(battery_v=7.6)
    policy = Recorder(fake, hook=lambda n: setattr(fake, "battery_v", 6.1 if n >= 30 else 7.6))
    t0 = time.perf_counter()
    stop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST).run(10.0)
    assert stop.kind == "safety" and stop.message.startswith("battery below 6.4 V for 1.5 s")
    assert policy.calls <= 30 + (1.5 + 2 * 0.5) / 0.02 and time.perf_counter() - t0 < 4.5
    assert legs_at(fake, LIE_DEG)


@pytest.mark.slow
def test_failed_servo_writes_stop_the_policy_after_three_ticks(tmp_path):
    fake = FakeVendor()
    policy = Recorder(fake, hook=lambda n: setattr(fake, "fail_writes", n >= 20))
    t0 = time.perf_counter()
    stop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST).run(10.0)
    assert stop == Stop("safety", "servo writes failed on 3 ticks in a row (I2C); the lie-down's servo writes "
                                  "failed: servos released (HAT MCU reset)") and policy.calls == 22
    assert time.perf_counter() - t0 < 2.0                                          # the lie-down is attempted, bounded
    assert [e[0] for e in fake.events].count("reset_mcu") == 2                     # construction, then the release
    fake.fail_writes = False                                                      # a transient fault: lies down
    policy = Recorder(fake, hook=lambda n: setattr(fake, "fail_writes", 20 <= n < 23))
    loop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST)
    orig = loop.lie_down
    loop.lie_down = lambda: (setattr(fake, "fail_writes", False), orig())
    stop = loop.run(10.0)
    assert stop.message == "servo writes failed on 3 ticks in a row (I2C)" and legs_at(fake, LIE_DEG)
    assert [e[0] for e in fake.events].count("reset_mcu") == 3     # the two constructions and the release above:
                                                                          # lying down, this one is not released


@pytest.mark.slow
def test_steady_25_ms_ticks_stop_the_policy(tmp_path):
    fake = FakeVendor(write_s=0.003)                                              # 8 x 3 ms + IMU: ~25.5 ms ticks
    policy = Recorder(fake)
    stop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST).run(10.0)
    assert stop.kind == "safety" and stop.message.startswith("ticks took over 16 ms 5 times in a row")
    assert policy.calls <= 6 and legs_at(fake, LIE_DEG)


@pytest.mark.slow
def test_a_steadily_late_loop_stops_on_its_rolling_mean_period(tmp_path):
    fake = FakeVendor()
    policy = Recorder(fake)
    loop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST)
    sleep_until = loop._sleep_until
    loop._sleep_until = lambda t: (sleep_until(t), time.sleep(0.025))             # descheduled 25 ms per tick
    stop = loop.run(10.0)
    assert stop.kind == "safety" and stop.message.startswith("the loop runs at") and "over 25 ticks" in stop.message
    assert policy.calls == 25 and legs_at(fake, LIE_DEG)       # the period rule, not the long-tick one, fired


@pytest.mark.slow
def test_a_hung_lie_down_is_abandoned_within_its_deadline(tmp_path):
    fake = FakeVendor()
    loop = ControlLoop(spec_stub(), Recorder(fake), robot_with(fake, tmp_path), **FAST)
    orig = loop.lie_down
    loop.lie_down = lambda: (setattr(fake, "hang_writes", True), orig())          # the I2C bus hangs
    t0 = time.perf_counter()
    stop = loop.run(0.3)
    assert stop == Stop("aborted", "time limit reached; the lie-down did not finish within 1.2 s; the bus hangs: "
                                   "servos released (HAT MCU reset)") and stop.exit_code == 3
    assert fake.events[-1][0] == "reset_mcu"
    assert time.perf_counter() - t0 < 0.3 + 1.2 + 1.5
    assert threading.active_count() == 1


@pytest.mark.slow
def test_a_signal_lies_down_and_a_second_one_during_the_lie_down_exits_at_once(tmp_path):
    fake = FakeVendor()
    policy = Recorder(fake, hook=lambda n: n == 10 and os.kill(os.getpid(), signal.SIGTERM))
    loop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), **FAST)
    assert loop.run(10.0) == Stop("signal", "SIGTERM received") and legs_at(fake, LIE_DEG)
    fake = FakeVendor()
    policy = Recorder(fake, hook=lambda n: n == 10 and os.kill(os.getpid(), signal.SIGINT))
    loop = ControlLoop(spec_stub(), policy, robot_with(fake, tmp_path), stand_s=0.2, lie_s=5.0, settle_s=0.1)
    orig = loop.lie_down
    loop.lie_down = lambda: (threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start(), orig())
    t0 = time.perf_counter()
    stop = loop.run(10.0)
    assert stop == Stop("aborted", "SIGINT received again: exiting without finishing the lie-down")
    assert time.perf_counter() - t0 < 2.0 and not legs_at(fake, LIE_DEG)          # left mid-move, at once


@pytest.mark.slow
def test_imu_biases_are_measured_at_rest_subtracted_and_refused_beyond_what_training_covers(tmp_path):
    def world(acc_bias=(0.0, 0.0, 0.0), gyro_bias=(0.0, 0.0, 0.0), shaking=False):
        def f(t):
            wobble = 0.4 * math.sin(40 * t) if shaking else 0.0
            return tuple(np.array([0.0, 0.0, 9.81]) + acc_bias), tuple(np.array([wobble, 0.0, 0.0]) + gyro_bias)
        return f
    # Within what the policy was trained with (0.3 m/s^2, 0.03 rad/s per axis): measured, then subtracted.
    fake = FakeVendor(world=world((0.25, -0.2, 0.1), (0.025, -0.02, 0.01)))
    loop = ControlLoop(spec_stub(), Recorder(fake), robot_with(fake, tmp_path), **FAST)
    loop.start()
    np.testing.assert_allclose(loop.imu_bias[0], [0.25, -0.2, 0.1], atol=0.02)
    np.testing.assert_allclose(loop.imu_bias[1], [0.025, -0.02, 0.01], atol=0.002)
    np.testing.assert_allclose(loop.obs[3:6], 0.0, atol=0.002)            # the gyro the policy sees: no bias left
    np.testing.assert_allclose(loop.obs[0:3], [0.0, 0.0, -1.0], atol=0.003)   # gravity: level
    # A tilted floor (0.15 g), a gyro bias the policy never saw, a robot moved during the check: refused
    # before anything moves.
    for w, words in ((world((0.15 * 9.81, 0.0, 0.0)), "1.47 m/s^2 (0.15 g) off level"),
                     (world(gyro_bias=(0.0, 0.0, 0.05)), "gyro reads 0.050 rad/s"),
                     (world(shaking=True), "the robot moved during the start-up check")):
        fake = FakeVendor(world=w)
        stop = ControlLoop(spec_stub(), Recorder(fake), robot_with(fake, tmp_path), **FAST).run(1.0)
        assert stop.kind == "refused" and words in stop.message and stop.exit_code == 2, stop
        assert legs_at(fake, LIE_DEG) and not any(e[0] == "infer" for e in fake.events)
        assert sum(e[0] == "write" for e in fake.events) == 12                # the vendor's start-up writes only


def tilting_world(flip: str | None = None):
    """Level through the start-up check (20 IMU reads) and the read after it; then, from the next read on, the
    nose down and back within 0.2-0.5 s, the left side down and back within 0.7-1.0 s, a left turn and back
    within 1.2-1.5 s (0.6 rad bumps). flip="tilt": a module turned 180 deg about z; flip="yaw": gyro z
    inverted. Set `world.fake` to the FakeVendor it serves (its reads are counted)."""
    start: list[float] = []

    def bump(t, t0):
        if not t0 <= t <= t0 + 0.3:
            return 0.0, 0.0
        x = (t - t0) / 0.3 * math.pi
        return 0.6 * math.sin(x) ** 2, 0.6 * math.pi / 0.3 * math.sin(2 * x)

    def world(t):
        if sum(e[0] == "imu" for e in world.fake.events) <= 21:
            return (0.0, 0.0, 9.81), (0.0, 0.0, 0.0)
        start[:] = start or [t]
        pitch, pitch_rate = bump(t - start[0], 0.2)
        roll_down, roll_rate = bump(t - start[0], 0.7)
        _, yaw_rate = bump(t - start[0], 1.2)
        roll = -roll_down
        acc = 9.81 * np.array([-math.sin(pitch), math.sin(roll), math.cos(pitch) * math.cos(roll)])
        gyro = np.array([-roll_rate, pitch_rate, yaw_rate])
        if flip == "tilt":                                                        # module turned 180 deg about z
            acc[:2], gyro[:2] = -acc[:2], -gyro[:2]
        if flip == "yaw":
            gyro[2] = -gyro[2]
        return tuple(acc), tuple(gyro)
    return world


@pytest.mark.slow
@pytest.mark.parametrize("flip", [None, "tilt", "yaw"])
def test_imu_check_passes_a_correct_mounting_and_fails_a_turned_module_or_an_inverted_yaw(flip, tmp_path):
    world = tilting_world(flip)
    fake = world.fake = FakeVendor(world=world)
    lines = []
    ok = imu_check(robot_with(fake, tmp_path), spec_stub(), seconds_per_step=1.0, say=lines.append)
    assert ok is (flip is None), lines
    if flip == "tilt":
        assert any("rotated 180 deg" in line for line in lines)
    elif flip == "yaw":
        assert sum("PASS" in line for line in lines) == 2 and any("gyro_z has the opposite sign" in line for line in lines)
    else:
        assert sum("PASS" in line for line in lines) == 3


def test_vendor_versions_and_offsets_are_reported(tmp_path):
    assert version_warnings({"pidog": "1.3.13", "robot_hat": "2.5.5"}) == []
    assert version_warnings({"pidog": "1.3.13", "robot_hat": "2.6.0"}) == [
        "warning: robot_hat 2.6.0 is installed; this runtime was tested with robot_hat 2.5.5"]
    conf = tmp_path / "pidog.conf"
    conf.write_text("legs_servo_offset_list = [0, 0, 0, 0, 0, 0, 0, 0]\n")
    lines = RobotHardware(FakeVendor().stack(), conf).describe()
    assert lines[0] == "vendor: pidog 1.3.13, robot_hat 2.5.5" and "every leg servo offset is zero" in lines[-1]


@pytest.mark.slow
def test_dry_run_hardware_never_fails_and_prints(capsys, tmp_path):
    hw = DryRunHardware(tmp_path / "none.conf")
    stop = ControlLoop(spec_stub(), hold_stand_policy(spec_stub()), hw, **FAST).run(0.2)
    assert stop == Stop("done", "time limit reached") and "[dry-run] legs" in capsys.readouterr().out


def test_robot_hat_2_6_is_refused_with_the_fix(monkeypatch):
    import types

    from deploy.vendor import load_vendor
    monkeypatch.setitem(sys.modules, "robot_hat", types.SimpleNamespace(__version__="2.6.0", utils=None))
    monkeypatch.setitem(sys.modules, "robot_hat.utils", types.SimpleNamespace())
    with pytest.raises(ImportError, match=r"robot_hat 2.6.0 has no Robot class .*install the 2.5.x branch"):
        load_vendor()


@pytest.mark.slow
def test_an_imu_silent_at_first_is_waited_for_and_a_failing_lie_down_is_reported(tmp_path, capsys):
    fake = FakeVendor()
    hw = robot_with(fake, tmp_path)
    fake.imu_failing = True
    threading.Timer(0.05, setattr, (fake, "imu_failing", False)).start()        # answers after 50 ms
    loop = ControlLoop(spec_stub(), Recorder(fake), hw, **FAST)
    real_write = hw.write_legs

    def write(deg):
        if loop._lying_down:
            raise RuntimeError("bus gone")
        return real_write(deg)
    hw.write_legs = write
    stop = loop.run(0.2)
    assert stop == Stop("done", "time limit reached; the lie-down failed: RuntimeError: bus gone; servos released "
                                "(HAT MCU reset)")
    with pytest.raises(SystemExit) as exit_info:
        main(["--policy", str(tmp_path / "policy.onnx"), "--dry-run", "--imu-check"])
    assert exit_info.value.code == 2 and "cannot be combined" in capsys.readouterr().err


@pytest.mark.parametrize("allowed", [True, False])
def test_the_paced_loop_asks_for_real_time_priority_and_gives_it_back(allowed, tmp_path, monkeypatch):
    calls, said = [], []

    def setscheduler(pid, policy, param):
        calls.append((pid, policy, param.sched_priority))
        if not allowed and policy == os.SCHED_FIFO:
            raise PermissionError("not allowed")

    monkeypatch.setattr(os, "sched_setscheduler", setscheduler)
    monkeypatch.setattr(os, "sched_getscheduler", lambda pid: os.SCHED_OTHER)
    monkeypatch.setattr(os, "sched_getparam", lambda pid: os.sched_param(0))
    fake = FakeVendor()
    moves = dict(FAST, stand_s=0.06, lie_s=0.06)                  # the pose moves do not matter here
    loop = ControlLoop(spec_stub(), Recorder(fake), robot_with(fake, tmp_path), realtime=True, say=said.append, **moves)
    assert loop.run(0.1).kind == "done"
    if allowed:     # FIFO for the run, the thread's old policy afterwards
        assert calls == [(0, os.SCHED_FIFO, 40), (0, os.SCHED_OTHER, 0)] and loop.stats.summary()["realtime_priority"]
    else:           # a one-line note, and the loop runs anyway
        assert calls == [(0, os.SCHED_FIFO, 40)] and loop.stats.summary()["realtime_priority"] is False
        assert any("no real-time priority" in line for line in said)
