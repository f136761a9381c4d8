"""The one rollout loop (evaluation, clip recording, export's observation recording, the viewer) and
the figures users judge runs by."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

import pidog_env  # noqa: F401  (registers PiDog-v0)
from pidog_env.gaits import TrotGait

# Called before each action with (step, observation, info, return so far); returning False ends the episode.
OnStep = Callable[[int, Any, dict, float], "bool | None"]


def run_episode(policy: Callable[[Any], np.ndarray], env: gym.Env, seed: int | None,
                on_step: OnStep | None = None) -> dict[str, Any]:
    """One episode; returns return, length, fell, the summed reward terms, and the env's final
    distance/drift/heading metrics."""
    obs, info = env.reset(seed=seed)
    total, steps, terms_sum = 0.0, 0, {}
    while True:
        if on_step is not None and on_step(steps, obs, info, total) is False:
            break
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += reward
        steps += 1
        for k, v in info["reward_terms"].items():
            terms_sum[k] = terms_sum.get(k, 0.0) + v
        if terminated or truncated:
            break
    return {
        "return": total, "length": steps, "fell": bool(info.get("fell", False)),
        "forward_distance": info["forward_distance"], "mean_forward_speed": info["mean_forward_speed"],
        "lateral_drift": info["lateral_drift"], "heading_change_deg": info["heading_change_deg"],
        "reward_terms": terms_sum,
    }


def run_trot_episode(seed: int = 0, randomize: bool = False, **env_kwargs: Any) -> dict[str, float]:
    """One 20 s episode of the default trot."""
    env = gym.make("PiDog-v0", randomize=randomize, **env_kwargs)
    try:
        return run_episode(TrotGait.for_env(env), env, seed)
    finally:
        env.close()


def summarize(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Mean figures over episodes (fall rate as a fraction)."""
    return {
        "episodes": len(episodes),
        "mean_return": float(np.mean([e["return"] for e in episodes])),
        "mean_forward_speed": float(np.mean([e["mean_forward_speed"] for e in episodes])),
        "mean_distance": float(np.mean([e["forward_distance"] for e in episodes])),
        "fall_rate": float(np.mean([e["fell"] for e in episodes])),
        "mean_length": float(np.mean([e["length"] for e in episodes])),
    }
