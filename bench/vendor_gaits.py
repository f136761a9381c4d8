"""The sanity anchor of the servo model: the vendor's own gaits must walk in it.

    python bench/vendor_gaits.py [--episodes 10] [--seconds 20]

SunFounder's `pidog` 1.3.13 walks every real PiDog with two gaits: `trot` (`pidog/trot.py`: diagonal pairs,
100 mm stride, 20 mm lift, 6 frames a cycle) and `forward` (`pidog/walk.py`: one leg at a time, 80 mm stride,
49 frames a cycle), both at 80 mm body height. This script rebuilds their foot coordinates (the same
arithmetic, checked against the vendor files by tests/test_vendor_gaits.py), solves them with this
project's IK (`kinematics.leg_ik`, the vendor's formula) and plays them at the vendor's timing: the
library's `servo_move` at speed 98 (the examples' setting for both gaits) moves every frame in 10 ms
steps over 29.8 ms, or longer when the largest change would exceed 428 deg/s, and skips a frame whose
largest change is under 1 deg. The env takes the latest write at each 20 ms control step (the servos read
their PWM at 50 Hz) through its own rate limit, dead time and randomization.

A model in which these gaits fall is too weak. Acceptance: each gait walks forward (no fall, at least
`MIN_DISTANCE_M` along its start heading, and upright: a thigh on the floor in at most `MAX_KNEEL_SHARE` of
the control steps, since a robot that sinks onto its knees and shuffles is not walking) in >= 9 of 10
randomized 20 s episodes. Writes bench/results/vendor_gaits.json: per gait the nominal (randomization off)
speed, fall and kneeling share, and over the randomized episodes (seeds 0 to N-1) the falls, the episodes
that walked forward, the mean speed and the mean kneeling share.
"""

from __future__ import annotations

import argparse
import math

import gymnasium as gym
import numpy as np

from pidog_env import mjcf_names as names
from pidog_env import robot
from pidog_env.evaluation import run_episode
from pidog_env.kinematics import leg_ik

MIN_DISTANCE_M = 0.2          # walked forward: at least this far in an episode (the vendor walk's ~0.06 m/s x 20 s = 1.2)
MAX_KNEEL_SHARE = 0.2         # walked upright: a thigh touches the floor in at most this share of the steps
SPEED = 98                    # the vendor examples' do_action speed for 'trot' and 'forward'
STEP_MS = 10                  # robot-hat servo_move writes every 10 ms
MAX_DPS = 428.0               # robot-hat's leg speed cap (robot.LEG_SPEED_DEG_S)


def trot_frames() -> list[list[tuple[float, float]]]:
    """pidog 1.3.13 `Trot(FORWARD, STRAIGHT).get_coords()`: 6 frames of four (y, z) foot targets in mm
    (y rearward from the hip, z below it), legs LF, RF, LH, RH. Diagonal pairs (LF+RH, then RF+LH) swing
    over 3 frames each: y forward by the stride on a cosine, z up linearly; the others slide back."""
    width, height, z0, steps = 100.0, 20.0, 80.0, 3
    origin = [width / 2 - 17.0 + 5.0 * d for d in (-1, -1, 1, 1)]          # centre of gravity -17, leg offsets
    coords = [[origin[i] - (0, 1, 1, 0)[i] * width, z0] for i in range(4)]
    frames = []
    for raised in ((0, 3), (1, 2)):
        for step in range(steps):
            new = []
            for i in range(4):
                if i in raised:
                    y = origin[i] + width * (math.cos(step * math.pi / (steps - 1)) - 1) / 2
                    new.append([y, z0 - height * step / (steps - 1)])
                else:
                    new.append([coords[i][0] + width / steps, z0])
            coords = new
            frames.append([tuple(c) for c in coords])
    return frames


def walk_frames() -> list[list[tuple[float, float]]]:
    """pidog 1.3.13 `Walk(FORWARD, STRAIGHT).get_coords()`: 49 frames; one leg at a time (LF, RH, RF, LH)
    swings over 6 frames, each followed by a section with all four feet on the ground, then the start."""
    width, height, z0, sections, steps = 80.0, 20.0, 80.0, 8, 6
    section = width / (sections - 1)
    origin = [width / 2 - 15.0 + off for off in (-10.0, -10.0, 20.0, 20.0)]
    start = [[origin[i] - (0, 2, 3, 1)[i] * 2 * section, z0] for i in range(4)]
    coords = [list(c) for c in start]
    frames = []
    for s in range(sections):
        raised = (1, 0, 4, 0, 2, 0, 3, 0)[s] - 1
        for step in range(steps):
            for i in range(4):
                if i == raised:
                    y = origin[i] + width * (math.cos(step * math.pi / (steps - 1)) - 1) / 2
                    coords[i] = [y, z0 - height * step / (steps - 1)]
                else:
                    coords[i] = [coords[i][0] + section / steps, z0]
            frames.append([tuple(c) for c in coords])
    frames.append([tuple(c) for c in start])
    return frames


GAITS = {"trot": trot_frames, "walk": walk_frames}


def frame_angles(frame: list[tuple[float, float]]) -> np.ndarray:
    """Vendor servo degrees (leg array order) of one frame: `Pidog.legs_angle_calculation`, which is
    this project's IK with the right legs negated."""
    y, z = np.array(frame).T / 1000.0
    hip, knee = leg_ik(y, z)
    return robot.model_rad_to_servo_deg(np.stack([hip, knee], axis=-1).reshape(robot.N_LEG))


def servo_writes(frames: list[np.ndarray], start: np.ndarray, seconds: float, speed: float = SPEED) -> np.ndarray:
    """robot-hat `Robot.servo_move` over the frames, repeated for `seconds`: the servo angles written every
    10 ms, shape (writes, 8). A frame whose largest change (whole degrees) is 0 is skipped for 10 ms."""
    pos, writes, n = np.array(start, dtype=np.float64), [], int(round(seconds * 1000 / STEP_MS))
    k = 0
    while len(writes) < n:
        target = frames[k % len(frames)]
        k += 1
        delta = target - pos
        max_delta = int(np.abs(delta).max())
        if max_delta == 0:
            writes.append(pos.copy())
            continue
        total_ms = -9.9 * speed + 1000
        if max_delta / total_ms * 1000 > MAX_DPS:
            total_ms = max_delta / MAX_DPS * 1000
        steps = int(total_ms / STEP_MS)
        for _ in range(steps):
            pos = pos + delta / steps
            writes.append(pos.copy())
    return np.array(writes[:n])


class VendorGait:
    """Plays a vendor gait in the env: the action at control step t is the latest 10 ms write at or
    before t (the env's rate limit and the servos do the rest). Call `reset()` before each episode."""

    def __init__(self, name: str, ctrl_dt: float, seconds: float) -> None:
        frames = [frame_angles(f) for f in GAITS[name]()]
        self.writes = servo_writes(frames, robot.POSES_DEG["stand"], seconds + 1.0)
        self.every = int(round(ctrl_dt * 1000 / STEP_MS))
        self.t = 0

    def reset(self) -> None:
        self.t = 0

    def __call__(self, obs) -> np.ndarray:
        i = min(self.t * self.every, len(self.writes) - 1)
        self.t += 1
        q = robot.servo_deg_to_model_rad(self.writes[i])
        return np.clip(robot.leg_rad_to_action(q), -1.0, 1.0).astype(np.float32)


def run(name: str, seed: int, randomize: bool, seconds: float) -> dict:
    """One episode of gait `name`; its figures plus `kneel_share`: the share of control steps after which
    a thigh touches the floor."""
    env = gym.make("PiDog-v2", randomize=randomize, episode_seconds=seconds)
    model, data = env.unwrapped.model, env.unwrapped.data
    thighs = {model.geom(g).id for g in names.THIGH_GEOMS}
    floor = model.geom(names.FLOOR).id
    kneeling = [0]

    def count(step: int, obs, info, ret) -> None:
        if step and any({c.geom1, c.geom2} & thighs and floor in (c.geom1, c.geom2) for c in data.contact[:data.ncon]):
            kneeling[0] += 1

    try:
        gait = VendorGait(name, env.unwrapped.dt, seconds)
        result = run_episode(gait, env, seed, on_step=count)
    finally:
        env.close()
    return {**result, "kneel_share": kneeling[0] / max(result["length"] - 1, 1)}


def walked(r: dict, seconds: float) -> bool:
    """No fall, at least MIN_DISTANCE_M per 20 s along the start heading, and upright."""
    return (not r["fell"] and r["forward_distance"] >= MIN_DISTANCE_M * seconds / 20.0
            and r["kneel_share"] <= MAX_KNEEL_SHARE)


def check(name: str, episodes: int, seconds: float) -> dict:
    nominal = run(name, 0, False, seconds)
    runs = [run(name, s, True, seconds) for s in range(episodes)]
    return {"nominal_speed_mps": round(nominal["mean_forward_speed"], 4), "nominal_fell": nominal["fell"],
            "nominal_kneel_share": round(nominal["kneel_share"], 3),
            "falls": sum(r["fell"] for r in runs), "walked_forward": sum(walked(r, seconds) for r in runs),
            "episodes": episodes, "mean_kneel_share": round(float(np.mean([r["kneel_share"] for r in runs])), 3),
            "mean_speed_mps": round(float(np.mean([r["mean_forward_speed"] for r in runs])), 4),
            "min_distance_m": round(min(r["forward_distance"] for r in runs), 3)}


def main(argv: list[str] | None = None) -> None:
    from bench._common import write_result
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10, help="randomized episodes per gait (seeds 0 to N-1)")
    parser.add_argument("--seconds", type=float, default=20.0, help="episode length")
    parser.add_argument("--gaits", nargs="+", default=list(GAITS), choices=list(GAITS), help="which vendor gaits")
    args = parser.parse_args(argv)
    if not 1 <= args.episodes <= 10_000:
        parser.exit(2, "error: --episodes must be in 1..10000\n")
    if not 0.1 <= args.seconds <= 600:
        parser.exit(2, "error: --seconds must be in 0.1..600\n")
    gaits = {name: check(name, args.episodes, args.seconds) for name in args.gaits}
    write_result("vendor_gaits", {
        "gaits": gaits,
        "passed": all(g["walked_forward"] >= 0.9 * g["episodes"] for g in gaits.values()),
        "seconds": args.seconds,
        "target": f">= 9 of 10 randomized episodes walk forward (no fall, >= {MIN_DISTANCE_M} m per 20 s, "
                  f"a thigh on the floor in <= {MAX_KNEEL_SHARE:.0%} of the steps)",
    }, protocol="pidog 1.3.13's trot and forward walk at speed 98 through this project's IK, one nominal episode "
                "and N randomized ones (seeds 0 to N-1) each", seeds=f"0-{args.episodes - 1}",
        episodes=args.episodes * len(gaits))


if __name__ == "__main__":
    main()
