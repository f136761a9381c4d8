"""The command task: seeded command sampling, the command in the observation, the commanded trot."""

from __future__ import annotations

import numpy as np
import pytest

from pidog_env.config import EnvConfig
from pidog_env.config_tree import apply
from pidog_env.env import PiDogEnv, observation_space
from pidog_env.gaits import TrotGait
from pidog_env.observation import CMD_VX_SCALE, CMD_WZ_SCALE


def command_cfg(**settings) -> EnvConfig:
    cfg = apply(EnvConfig(), "command.enabled", True)
    for key, value in settings.items():
        cfg = apply(cfg, key.replace("__", "."), value)
    return cfg


def commands_seen(cfg: EnvConfig, seed: int, steps: int) -> list[tuple[float, float]]:
    env = PiDogEnv(cfg)
    env.reset(seed=seed)
    seen = [env.command]
    for _ in range(steps):
        env.step(np.zeros(8, dtype=np.float32))
        seen.append(env.command)
    return seen


def test_command_sampling_is_seeded_reproducible_and_renewed_mid_episode():
    cfg = command_cfg(randomization__enabled=False, command__resample_s=(0.2, 0.4), command__zero_share=0.3)
    a, b, c = commands_seen(cfg, 3, 150), commands_seen(cfg, 3, 150), commands_seen(cfg, 4, 150)
    assert a == b and a != c
    distinct = list(dict.fromkeys(a))
    assert len(distinct) >= 5                                   # 3 s of 0.2-0.4 s commands
    for vx, wz in distinct:
        assert 0.0 <= vx <= 0.12 and -0.5 <= wz <= 0.5


def test_zero_share_and_ranges_over_many_episodes():
    cfg = command_cfg(randomization__enabled=False, command__zero_share=0.25, command__vx_range=(0.05, 0.1))
    env = PiDogEnv(cfg)
    firsts = []
    for seed in range(200):
        env.reset(seed=seed)
        firsts.append(env.command)
    zeros = sum(c == (0.0, 0.0) for c in firsts)
    assert 30 <= zeros <= 70                                    # 25 % of 200, binomial +- 3.5 sigma
    assert all(0.05 <= vx <= 0.1 for vx, _ in firsts if (vx, _) != (0.0, 0.0))


def test_the_command_is_in_the_observation_scaled_and_changes_with_the_next_step():
    cfg = command_cfg(randomization__enabled=False, command__resample_s=(0.1, 0.1))
    env = PiDogEnv(cfg)
    assert observation_space(cfg).shape == (18,) and env.obs_layout["command"] == slice(16, 18)
    obs, _ = env.reset(seed=0)
    for _ in range(12):
        vx, wz = env.command
        assert obs[16] == pytest.approx(vx * CMD_VX_SCALE, abs=1e-6)
        assert obs[17] == pytest.approx(wz * CMD_WZ_SCALE, abs=1e-6)
        obs, _, _, _, info = env.step(np.zeros(8, dtype=np.float32))
        assert (info["command_vx"], info["command_wz"]) == (vx, wz)   # the command this step acted on


def test_reset_option_fixes_the_command_and_bad_values_are_refused():
    env = PiDogEnv(command_cfg(command__resample_s=(0.1, 0.1)))
    env.reset(seed=0, options={"command": (0.05, -0.2)})
    for _ in range(50):
        env.step(np.zeros(8, dtype=np.float32))
    assert env.command == (0.05, -0.2)
    with pytest.raises(ValueError, match="command"):
        env.reset(seed=0, options={"command": (float("nan"), 0.0)})


def test_forward_task_is_unchanged_by_the_command_settings():
    env = PiDogEnv(EnvConfig())
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(8, dtype=np.float32))
    assert obs.shape == (16,) and env.command is None and "command_vx" not in info
    assert info["reward_terms"]["track_vx"] == 0.0 and info["reward_terms"]["stand_still"] == 0.0


def rollout(cfg: EnvConfig, command: tuple[float, float], seconds: float = 8.0, seed: int = 0) -> dict:
    env = PiDogEnv(apply(cfg, "episode_seconds", seconds))
    trot = TrotGait.for_env(env)
    obs, _ = env.reset(seed=seed, options={"command": command})
    terms = {"track_vx": 0.0, "stand_still": 0.0, "forward": 0.0}
    while True:
        obs, _, terminated, truncated, info = env.step(trot(obs))
        for k in terms:
            terms[k] += info["reward_terms"][k]
        if terminated or truncated:
            return {**info, "terms": terms, "fell": terminated}


def test_the_commanded_trot_follows_speed_commands_and_turns_the_commanded_way():
    cfg = command_cfg(randomization__enabled=False)
    slow, fast, still = rollout(cfg, (0.06, 0.0)), rollout(cfg, (0.12, 0.0)), rollout(cfg, (0.0, 0.0))
    assert abs(slow["mean_vx"] - 0.06) <= 0.015 and abs(fast["mean_vx"] - 0.12) <= 0.015
    assert abs(still["mean_vx"]) <= 0.02 and not (slow["fell"] or fast["fell"] or still["fell"])
    left, right = rollout(cfg, (0.0, 0.4)), rollout(cfg, (0.0, -0.4))
    assert left["mean_wz"] > 0.1 and right["mean_wz"] < -0.1
    # tracking replaces the forward term; standing still is asked only under the zero command
    assert fast["terms"]["forward"] == 0.0 and fast["terms"]["track_vx"] > 0
    assert still["terms"]["stand_still"] < 0 and fast["terms"]["stand_still"] == 0.0
    assert 0 < fast["mean_vx_error"] < 0.1 and 0 < fast["mean_wz_error"] < 1.0
