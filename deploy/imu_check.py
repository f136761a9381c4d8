"""`--imu-check`: the operator tilts and turns the robot by hand and the runtime checks the IMU's body-frame
signs (a module mounted turned 180 deg about the vertical reads normally at rest but inverts tilt feedback;
an axis mapping that does not fit the mounting can invert the yaw rate, which no tilt shows)."""

from __future__ import annotations

import time

import numpy as np

from deploy.policy_spec import PolicySpec
from deploy.runtime import ControlLoop, hold_stand_policy
from pidog_env.observation import GravityEstimator

IMU_CHECK_STEPS = (
    # instruction, expected gravity component (index, sign) or None, expected gyro rate during the motion (index, sign)
    ("tilt the nose DOWN (about 30 deg) and back", (0, +1), (1, +1)),
    ("tilt the LEFT side DOWN (about 30 deg) and back", (1, +1), (0, -1)),
    ("keep it level and turn it to its LEFT (counter-clockwise seen from above, about 45 deg) and back", None, (2, +1)),
)
IMU_CHECK_GRAVITY = 0.3             # |gravity component| (unit vector) that counts as tilted
IMU_CHECK_GYRO = 0.5                # rad/s that counts as turning


def imu_check(hw, spec: PolicySpec, seconds_per_step: float = 15.0, say=print) -> bool:
    """Guide the operator through two tilts and a turn and check the body-frame signs (gravity and gyro)."""
    gravity = GravityEstimator(spec.gravity_alpha, spec.control_dt)
    loop = ControlLoop(spec, hold_stand_policy(spec), hw, realtime=True, say=say)
    loop.check_start()                                      # a level, still robot first (also the mounting offsets)
    gravity.reset(list(map(float, loop.read_imu(time.perf_counter())[0])))
    passed = True
    axis = "xyz"
    for text, tilt, (wi, wsign) in IMU_CHECK_STEPS:
        say(f"IMU check: {text} within {seconds_per_step:.0f} s")
        seen_gravity = seen_gyro = wrong = False
        first_turn = 0.0                                   # the sign of the first clear rate on the yaw axis
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < seconds_per_step and not (seen_gravity and seen_gyro) and not first_turn:
            acc, gyro = loop.read_imu(time.perf_counter())
            g = gravity(list(map(float, acc)), list(map(float, gyro)))
            if tilt is None:                              # a turn: the first clear rate decides
                first_turn = float(np.sign(gyro[wi])) if abs(gyro[wi]) > IMU_CHECK_GYRO else 0.0
            else:
                gi, gsign = tilt
                seen_gravity |= gsign * g[gi] > IMU_CHECK_GRAVITY
                seen_gyro |= wsign * gyro[wi] > IMU_CHECK_GYRO
                wrong |= -gsign * g[gi] > IMU_CHECK_GRAVITY
            if k % 10 == 0:
                say(f"  gravity {g[0]:+.2f} {g[1]:+.2f} {g[2]:+.2f}   gyro {gyro[0]:+.2f} {gyro[1]:+.2f} {gyro[2]:+.2f} rad/s")
            k += 1
            time.sleep(max(0.0, t0 + k * spec.control_dt - time.perf_counter()))
        if tilt is None:
            if first_turn == wsign:
                say(f"  PASS: gyro_{axis[wi]} {'>' if wsign > 0 else '<'} 0 while turning left")
            else:
                passed = False
                say(f"  FAIL: gyro_{axis[wi]} " + ("has the opposite sign while turning left: the IMU's axes do not "
                                                  "match this runtime's chip-to-body mapping" if first_turn else
                                                  "did not show the turn"))
            continue
        gi, gsign = tilt
        if seen_gravity and seen_gyro:
            say(f"  PASS: gravity_{axis[gi]} {'>' if gsign > 0 else '<'} 0 and gyro_{axis[wi]} {'>' if wsign > 0 else '<'} 0")
        else:
            passed = False
            why = ("the opposite sign was seen: is the IMU module rotated 180 deg?" if wrong else
                   "the expected tilt was not seen")
            say(f"  FAIL: gravity_{axis[gi]} {'>' if gsign > 0 else '<'} {gsign * IMU_CHECK_GRAVITY:+.1f} "
                f"{'seen' if seen_gravity else 'not seen'}, gyro_{axis[wi]} {'seen' if seen_gyro else 'not seen'}; {why}")
    return passed
