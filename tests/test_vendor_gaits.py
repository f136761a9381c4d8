"""The vendor's own gaits (bench/vendor_gaits.py), the servo model's sanity anchor: the foot coordinates are
pidog 1.3.13's, played at its timing, and they walk in the model."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from bench import vendor_gaits
from pidog_env import robot

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "vendor" / "pidog" / "pidog"


@pytest.mark.skipif(not (VENDOR / "trot.py").exists(), reason="the vendor sources are not beside this checkout")
def test_the_coordinates_are_the_vendor_librarys(monkeypatch):
    monkeypatch.setitem(sys.modules, "readchar", types.ModuleType("readchar"))    # trot.py's demo imports it
    monkeypatch.syspath_prepend(str(VENDOR))
    import trot
    import walk
    np.testing.assert_allclose(vendor_gaits.trot_frames(), trot.Trot(trot.Trot.FORWARD, trot.Trot.STRAIGHT).get_coords())
    np.testing.assert_allclose(vendor_gaits.walk_frames(), walk.Walk(walk.Walk.FORWARD, walk.Walk.STRAIGHT).get_coords())


def test_the_gaits_play_at_the_vendor_timing():
    """One cycle takes the documented 0.54 s (trot) and 1.27 s (walk); no write moves a servo faster than
    the library's integer-degree speed check lets it (under 13 deg per 20 ms)."""
    for name, cycle_s in (("trot", 0.54), ("walk", 1.27)):
        frames = [vendor_gaits.frame_angles(f) for f in vendor_gaits.GAITS[name]()]
        start = frames[-1]                                    # in the cycle: from its last frame
        one = vendor_gaits.servo_writes(frames, start, 10.0)
        two = vendor_gaits.servo_writes(frames + frames, start, 10.0)
        period = next(i for i in range(1, len(one)) if np.allclose(one[i:i + 200], one[:200]) and i > 10)
        assert period * 0.01 == pytest.approx(cycle_s, abs=0.011)
        np.testing.assert_allclose(one, two)
        assert np.abs(np.diff(one, axis=0)).max() < 6.5
    # the vendor's stand feet give the vendor's stand angles (right legs negated, like legs_angle_calculation)
    feet = [robot.STAND_FOOT_YZ_MM["front"]] * 2 + [robot.STAND_FOOT_YZ_MM["hind"]] * 2
    np.testing.assert_allclose(vendor_gaits.frame_angles(feet), robot.POSES_DEG["stand"], atol=0.1)


def test_the_vendor_walk_walks_forward_on_randomized_servos():
    result = vendor_gaits.check("walk", episodes=1, seconds=3.0)
    assert not result["nominal_fell"] and result["falls"] == 0 and result["walked_forward"] == 1
    assert result["nominal_speed_mps"] > 0.01 and result["mean_speed_mps"] > 0.01


def test_a_gait_on_its_knees_is_not_walking(monkeypatch):
    """The kneeling share counts control steps with a thigh on the floor: none while the robot holds its
    stand pose, most of them in the sit pose (hind thighs down), and a kneeling episode does not count as
    walking however far it got."""
    class Hold:
        def __init__(self, pose: str):
            self.action = np.clip(robot.leg_rad_to_action(robot.servo_deg_to_model_rad(robot.POSES_DEG[pose])), -1, 1)

        def __call__(self, obs):
            return self.action.astype(np.float32)

    for pose, low, high in (("stand", 0.0, 0.0), ("sit", 0.5, 1.0)):
        monkeypatch.setattr(vendor_gaits, "VendorGait", lambda name, dt, seconds, p=pose: Hold(p))
        result = vendor_gaits.run("walk", 0, False, 2.0)
        assert low <= result["kneel_share"] <= high, (pose, result["kneel_share"])
    far = {"fell": False, "forward_distance": 1.0}
    assert vendor_gaits.walked({**far, "kneel_share": 0.1}, 20.0)
    assert not vendor_gaits.walked({**far, "kneel_share": 0.5}, 20.0)
