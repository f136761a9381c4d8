"""Evaluate a saved policy: a table of return, forward speed, distance and fall rate over seeded episodes.

    python training/evaluate.py --model outputs/<exp>/final_model.zip [--episodes 10] [--seed 0]
                                [--no-randomization] [--json out.json]

Accepts SB3 zips written by this project, BC `.pth` policies, or `--gait trot` for the hard-coded trot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pidog_env.config import EnvConfig
from pidog_env.evaluation import run_episode, summarize
from pidog_env.gaits import TrotGait
from training.common import PipelineError, make_env

EVAL_SEED_BASE = 10_000


def policy_callable(policy) -> Callable[[Any], np.ndarray]:
    def act(obs):
        return policy.predict(obs, deterministic=True)[0]
    return act


def evaluate_policy(policy, env_cfg: EnvConfig, episodes: int, seed: int = EVAL_SEED_BASE,
                    randomize: bool | None = None) -> dict[str, Any]:
    """Mean return / speed / distance / fall rate over `episodes` seeded episodes (deterministic actions)."""
    cfg = dataclasses.replace(env_cfg)
    if randomize is not None:
        cfg.randomization = dataclasses.replace(cfg.randomization, enabled=randomize)
    env = make_env(cfg)
    act = policy if callable(policy) and not hasattr(policy, "predict") else policy_callable(policy)
    try:
        eps = [run_episode(act, env, seed + i) for i in range(episodes)]
    finally:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="SB3 .zip or BC .pth written by this project")
    src.add_argument("--gait", choices=["trot"], help="evaluate the hard-coded gait instead")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=EVAL_SEED_BASE)
    parser.add_argument("--no-randomization", action="store_true")
    parser.add_argument("--allow-pickle", action="store_true", help="allow SB3 zips not written by this project")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    try:
        if args.model:
            from training.policies import load_policy
            policy, meta = load_policy(args.model, allow_pickle=args.allow_pickle)
            env_cfg = meta.get("env_config_obj") or EnvConfig()
        else:
            env_cfg = EnvConfig()
            env = make_env(env_cfg)
            policy = TrotGait.for_env(env)
            env.close()
        result = evaluate_policy(policy, env_cfg, args.episodes, args.seed, randomize=not args.no_randomization)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result["per_episode"]))
    print(f"\nmean return {result['mean_return']:.1f} | mean speed {result['mean_forward_speed']:.3f} m/s | "
          f"mean distance {result['mean_distance']:.2f} m | fall rate {result['fall_rate']:.0%} "
          f"({args.episodes} episodes, randomization {'off' if args.no_randomization else 'on'})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
