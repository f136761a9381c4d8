"""PiDog-v2 pinned to recorded episodes: the episode's draws (model parameters, calibration, start pose),
the commands, pushes, IMU delay and noise, observations and rewards of three short runs must match
`env_reference.json` (within 1e-6, room for floating-point differences between builds, far below what
any change of behaviour moves them).

After an intended change of behaviour, rewrite the reference with `python tests/test_env_reference.py`
and say in the commit why the episodes changed.
"""

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from pidog_env import config_tree          # importing the package registers PiDog-v2
from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait

REFERENCE = Path(__file__).resolve().parent / "env_reference.json"
STEPS = 100
OBS_EVERY = 20                       # observations kept every this many steps (rewards every step)


def _command_config() -> EnvConfig:
    # Pushes and new commands within the 2 s run, so both are pinned too.
    cfg = config_tree.apply(EnvConfig(), "command.enabled", True)
    cfg = config_tree.apply(cfg, "command.resample_s", (0.5, 1.0))
    return config_tree.apply(cfg, "randomization.push_interval_s", (0.4, 0.8))


SCENARIOS = {
    # the command task with default randomization, driven by the commanded trot
    "command_trot": (_command_config, {}, 3, "trot"),
    # the forward task with default randomization, driven by random actions
    "forward_random": (EnvConfig, {}, 4, "random"),
    # no randomization; ultrasonic, history and a held IMU sample
    "nominal_options": (lambda: config_tree.apply(EnvConfig(), "imu.hold_steps", 2),
                        {"randomize": False, "ultrasonic": True, "history": 2}, 5, "trot"),
}


def record(name: str) -> dict:
    make_config, kwargs, seed, driver = SCENARIOS[name]
    env = gym.make("PiDog-v2", config=make_config(), **kwargs)
    base = env.unwrapped
    gait, rng = TrotGait.for_env(env), np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    m, d = base.model, base.data
    out = {"body_mass": m.body_mass.tolist(), "friction": m.geom_friction[:, 0].tolist(),
           "kp": m.actuator_gainprm[:, 0].tolist(), "force_limit": m.actuator_forcerange[:, 1].tolist(),
           "damping": m.dof_damping.tolist(), "friction_loss": m.dof_frictionloss.tolist(),
           "servo_supply_dead_time": [base._episode.supply, base._episode.dead_substeps],
           "torso_com": m.body_ipos[base.idx.torso_body].tolist(), "ctrl": d.ctrl.tolist(), "qpos": d.qpos.tolist(),
           "obs": [obs.tolist()], "reward": [], "command": [], "ended": None}
    for t in range(1, STEPS + 1):
        action = gait(obs) if driver == "trot" else rng.uniform(-0.6, 0.6, 8).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        out["reward"].append(reward)
        out["command"].append(list(base.command or ()))
        if t % OBS_EVERY == 0 or terminated or truncated:
            out["obs"].append(obs.tolist())
        if terminated or truncated:
            out["ended"] = t
            break
    env.close()
    return out


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("name", SCENARIOS)
def test_episodes_match_the_recorded_reference(name, reference):
    expected, got = reference[name], record(name)
    assert got["ended"] == expected["ended"]
    for key, value in expected.items():
        if key != "ended":
            np.testing.assert_allclose(np.array(got[key], dtype=float), np.array(value, dtype=float),
                                       rtol=1e-6, atol=1e-6, err_msg=f"{name}: {key}")


def test_the_reference_covers_what_an_episode_draws(reference):
    """The runs exercise what the reference is meant to pin: randomized and nominal physics, renewed
    commands, and episodes that end early as well as ones that run the whole 100 steps."""
    cmd, rand, nominal = reference["command_trot"], reference["forward_random"], reference["nominal_options"]
    assert len({tuple(c) for c in cmd["command"]}) >= 2                   # a new command mid-run
    assert cmd["friction"] != nominal["friction"] and cmd["kp"] != rand["kp"] and cmd["damping"] != rand["damping"]
    assert nominal["servo_supply_dead_time"] == [1.0, 3] and cmd["servo_supply_dead_time"] != rand["servo_supply_dead_time"]
    assert len(nominal["reward"]) == STEPS and cmd["ended"] is None
    assert rand["ended"] is not None and len(rand["reward"]) == rand["ended"] < STEPS


if __name__ == "__main__":
    runs = {name: record(name) for name in SCENARIOS}       # one line per recorded quantity, for readable diffs
    REFERENCE.write_text("{\n" + ",\n".join(
        f" {json.dumps(name)}: {{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in run.items()) + "\n }"
        for name, run in runs.items()) + "\n}\n")
    print(f"wrote {REFERENCE}", file=sys.stderr)
