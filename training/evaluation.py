"""Evaluating a policy: return, forward speed, distance and fall rate over seeded episodes.

The one place every stage, the selection and `pidog evaluate` evaluate through. A policy is an SB3 or
BC policy object (`policy_callable`) or any callable obs -> action (the trot gait).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pidog_env.config import EnvConfig
from pidog_env.evaluation import run_episode, run_episodes_batched, summarize
from training.common import make_env, with_randomization
from training.config import SELECTION_SEEDS

EVAL_SEED_BASE = 10_000   # the periodic evaluations (and best_model.zip's selection) use seeds from here
FINAL_EVAL_SEED_BASE = EVAL_SEED_BASE + SELECTION_SEEDS   # 20,000: the final figures, episodes the selection never saw
EVAL_BATCH = 32          # episodes stepped in lockstep by evaluate_policy (one network call per step)


def policy_callable(policy) -> Callable[[Any], np.ndarray]:
    """obs -> deterministic action, for SB3 policies/models and anything with `predict`."""
    if callable(policy) and not hasattr(policy, "predict"):
        return policy

    def act(obs):
        return policy.predict(obs, deterministic=True)[0]
    return act


def evaluate_policy(policy, env_cfg: EnvConfig, episodes: int, seed: int = EVAL_SEED_BASE,
                    randomize: bool | None = None, batch: int = EVAL_BATCH) -> dict[str, Any]:
    """Mean return / speed / distance / fall rate over `episodes` seeded episodes (deterministic actions).

    SB3 policies on vector observations run up to `batch` episodes in lockstep with one network call
    per control step (`run_episodes_batched`); anything else (the trot, camera policies) one by one."""
    cfg = env_cfg if randomize is None else with_randomization(env_cfg, randomize)
    seeds = [seed + i for i in range(episodes)]
    batched = hasattr(policy, "predict") and not cfg.use_camera and batch > 1 and episodes > 1
    envs = [make_env(cfg) for _ in range(min(batch, episodes) if batched else 1)]
    try:
        if batched:
            eps = run_episodes_batched(lambda obs: policy.predict(obs, deterministic=True)[0], envs, seeds)
        else:
            act = policy_callable(policy)
            eps = [run_episode(act, envs[0], s) for s in seeds]
    finally:
        for env in envs:
            env.close()
    return {**summarize(eps), "per_episode": [
        {k: e[k] for k in ("return", "mean_forward_speed", "forward_distance", "fell", "length")} for e in eps]}


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'episode':>7} {'return':>9} {'speed m/s':>9} {'distance m':>10} {'steps':>6} {'fell':>5}"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows):
        lines.append(f"{i:>7} {r['return']:>9.1f} {r['mean_forward_speed']:>9.3f} {r['forward_distance']:>10.2f} "
                     f"{r['length']:>6} {'yes' if r['fell'] else 'no':>5}")
    return "\n".join(lines)
