"""The one rollout loop (evaluation, clip recording, export's observation recording, the viewer) and
the figures users judge runs by."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from pidog_env.gaits import TrotGait          # importing the package registers PiDog-v2

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
    return _episode_result(total, steps, info, terms_sum)


def _episode_result(total: float, steps: int, info: dict, terms_sum: dict) -> dict[str, Any]:
    return {
        "return": total, "length": steps, "fell": bool(info.get("fell", False)),
        "forward_distance": info["forward_distance"], "mean_forward_speed": info["mean_forward_speed"],
        "lateral_drift": info["lateral_drift"], "heading_change_deg": info["heading_change_deg"],
        "reward_terms": terms_sum,
        **{k: info[k] for k in TRACKING_KEYS if k in info},       # the command task's figures
    }


TRACKING_KEYS = ("mean_vx", "mean_wz", "mean_vx_error", "mean_wz_error")


def tracking_text(ev: dict[str, Any]) -> str:
    """The command task's tracking errors for a log line ('' for the forward task)."""
    if "mean_vx_error" not in ev:
        return ""
    return f", command error vx {ev['mean_vx_error']:.3f} m/s wz {ev['mean_wz_error']:.2f} rad/s"


def run_episodes_batched(policy: Callable[[np.ndarray], np.ndarray], envs: list[gym.Env],
                         seeds: list[int]) -> list[dict[str, Any]]:
    """The episodes `seeds` (one each, results in that order), stepped in lockstep over `envs` so that
    `policy` maps a batch of observations (rows) to a batch of actions in one call: one network call per
    control step instead of one per env step. An env that finishes its episode starts the next seed.
    Per episode the result is exactly `run_episode`'s for a policy that acts on each row alone."""
    results: list[dict[str, Any] | None] = [None] * len(seeds)
    queue = iter(range(len(seeds)))

    def start(env: gym.Env) -> dict[str, Any] | None:
        i = next(queue, None)
        if i is None:
            return None
        obs, _ = env.reset(seed=seeds[i])
        return {"env": env, "i": i, "obs": obs, "total": 0.0, "steps": 0, "terms": {}}

    # per running env: its episode index, observation, return, steps and summed reward terms
    slots = [s for s in (start(env) for env in envs) if s is not None]
    while slots:
        actions = policy(np.stack([s["obs"] for s in slots]))
        running = []
        for s, action in zip(slots, actions):
            s["obs"], reward, terminated, truncated, info = s["env"].step(action)
            s["total"] += reward
            s["steps"] += 1
            for k, v in info["reward_terms"].items():
                s["terms"][k] = s["terms"].get(k, 0.0) + v
            if terminated or truncated:
                results[s["i"]] = _episode_result(s["total"], s["steps"], info, s["terms"])
                nxt = start(s["env"])
                if nxt is not None:
                    running.append(nxt)
            else:
                running.append(s)
        slots = running
    return results  # type: ignore[return-value]


def run_trot_episode(seed: int = 0, randomize: bool = False, **env_kwargs: Any) -> dict[str, float]:
    """One 20 s episode of the default trot."""
    env = gym.make("PiDog-v2", randomize=randomize, **env_kwargs)
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
        **{k: float(np.mean([e[k] for e in episodes])) for k in TRACKING_KEYS if episodes and k in episodes[0]},
    }
