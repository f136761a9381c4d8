"""Evaluating a policy: return, forward speed, distance and fall rate over seeded episodes.

The one place every stage, the selection and `pidog evaluate` evaluate through. A policy is an SB3 or
BC policy object (`policy_callable`) or any callable obs -> action (the trot gait).
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Callable

import numpy as np

from pidog_env.config import EnvConfig
from pidog_env.evaluation import TRACKING_KEYS, run_episode, run_episodes_batched, summarize
from training.common import make_env, with_randomization
from training.config import SELECTION_SEEDS

EVAL_SEED_BASE = 10_000   # the periodic evaluations (and best_model.zip's selection) use seeds from here
FINAL_EVAL_SEED_BASE = EVAL_SEED_BASE + SELECTION_SEEDS   # 20,000: the final figures, episodes the selection never saw
EVAL_BATCH = 32          # rows of every network call of an evaluation (padded; see batch_actions)
PARALLEL_FROM = 8        # evaluations of fewer episodes stay in this process (a worker takes ~1 s to start)


def batch_actions(policy) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of observations -> deterministic actions, always through network calls of exactly
    `EVAL_BATCH` rows (zero rows pad a short batch). A matrix product's rounding depends on the number
    of rows, so with a fixed number an episode's actions depend on its own observations only: an
    episode's figures are a function of the policy and its seed, whichever episodes run beside it, in
    which process and in which order (tests/test_evaluation.py checks this on the machine it runs on)."""
    def act(obs: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(obs), EVAL_BATCH):
            chunk = obs[i:i + EVAL_BATCH]
            padded = np.zeros((EVAL_BATCH, *chunk.shape[1:]), dtype=chunk.dtype)
            padded[:len(chunk)] = chunk
            out.append(policy.predict(padded, deterministic=True)[0][:len(chunk)])
        return np.concatenate(out)
    return act


def _vector_policy(policy, cfg: EnvConfig) -> bool:
    """An SB3/BC policy on vector observations (the batched, padded path); not the trot or a camera policy."""
    return hasattr(policy, "predict") and not cfg.use_camera


def policy_callable(policy) -> Callable[[Any], np.ndarray]:
    """obs -> deterministic action, for SB3 policies/models and anything with `predict` (vector
    observations act as one row of `batch_actions`, so a single episode equals the same episode of an
    evaluation); a plain callable is returned as it is."""
    if callable(policy) and not hasattr(policy, "predict"):
        return policy
    rows = batch_actions(policy)

    def act(obs):
        if isinstance(obs, dict):
            return policy.predict(obs, deterministic=True)[0]
        return rows(np.asarray(obs)[None])[0]
    return act


def run_seeds(policy, cfg: EnvConfig, seeds: list[int], envs: list | None = None) -> list[dict[str, Any]]:
    """The episodes `seeds` with deterministic actions, in lockstep over `envs` (made and closed here when
    None) for vector policies, one by one otherwise."""
    vector = _vector_policy(policy, cfg)
    own = envs is None
    if own:
        envs = [make_env(cfg) for _ in range(min(EVAL_BATCH, len(seeds)) if vector else 1)]
    try:
        if vector:
            return run_episodes_batched(batch_actions(policy), envs[:max(1, min(EVAL_BATCH, len(seeds)))], seeds)
        act = policy_callable(policy)
        return [run_episode(act, envs[0], s) for s in seeds]
    finally:
        if own:
            for env in envs:
                env.close()


def evaluate_policy(policy, env_cfg: EnvConfig, episodes: int, seed: int = EVAL_SEED_BASE,
                    randomize: bool | None = None, pool: "EvalPool | None" = None) -> dict[str, Any]:
    """Mean return / speed / distance / fall rate over `episodes` seeded episodes (deterministic actions).

    SB3 policies on vector observations run up to `EVAL_BATCH` episodes in lockstep with one network call
    per control step (`run_episodes_batched`), split over `pool`'s processes when there is one; anything
    else (the trot, camera policies) one by one. The figures are the same either way."""
    cfg = env_cfg if randomize is None else with_randomization(env_cfg, randomize)
    seeds = [seed + i for i in range(episodes)]
    eps = pool.run(policy, cfg, seeds) if pool is not None else run_seeds(policy, cfg, seeds)
    return summary_of(eps)


def summary_of(eps: list[dict[str, Any]]) -> dict[str, Any]:
    return {**summarize(eps), "per_episode": [
        {k: e[k] for k in ("return", "mean_forward_speed", "forward_distance", "fell", "length", *TRACKING_KEYS)
         if k in e} for e in eps]}


class EvalPool:
    """Evaluations split over this process and one worker process per other core (`workers` in all).

    The workers start at the first evaluation of `PARALLEL_FROM` or more episodes, keep their envs (one
    set per env config) between evaluations, and end with `close()` or with this process. Each gets a
    pickled copy of the policy (made here, read only by this pool's own workers) and a contiguous share
    of the seeds; the results are the episodes `run_seeds` gives, in seed order."""

    def __init__(self, workers: int | None = None) -> None:
        from training.vec_env import default_workers
        self.workers = workers or default_workers(EVAL_BATCH)
        self._conns: list = []
        self._procs: list = []
        self._envs: dict[str, list] = {}
        self._seen: dict[tuple, dict[int, dict[str, Any]]] = {}     # (weights, env config) -> seed -> episode
        self.reused = 0                                              # episodes answered from _seen

    def __enter__(self) -> "EvalPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def envs(self, cfg: EnvConfig, n: int) -> list:
        have = self._envs.setdefault(json.dumps(cfg.to_dict(), sort_keys=True, default=str), [])
        while len(have) < n:
            have.append(make_env(cfg))
        return have[:n]

    def run(self, policy, cfg: EnvConfig, seeds: list[int]) -> list[dict[str, Any]]:
        """The episodes `seeds`; an episode this pool has already run for the same weights (say the BC
        policy, which PPO starts from) is not run again."""
        key = _fingerprint(policy), json.dumps(cfg.to_dict(), sort_keys=True, default=str)
        if key[0] is None:
            return self._run(policy, cfg, seeds)
        known = self._seen.setdefault(key, {})
        new = [s for s in seeds if s not in known]
        if new:
            known.update(zip(new, self._run(policy, cfg, new)))
        self.reused += len(seeds) - len(new)
        return [known[s] for s in seeds]

    def _run(self, policy, cfg: EnvConfig, seeds: list[int]) -> list[dict[str, Any]]:
        if self.workers <= 1 or len(seeds) < PARALLEL_FROM or not _vector_policy(policy, cfg):
            return run_seeds(policy, cfg, seeds, self.envs(cfg, min(EVAL_BATCH, len(seeds))))
        self._start()
        shares = np.array_split(np.asarray(seeds), self.workers)
        blob = pickle.dumps(policy)
        for conn, share in zip(self._conns, shares[1:]):
            conn.send((cfg, blob, [int(s) for s in share]))
        mine = run_seeds(policy, cfg, [int(s) for s in shares[0]], self.envs(cfg, min(EVAL_BATCH, len(shares[0]))))
        replies = [conn.recv() for conn in self._conns]
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return mine + [ep for reply in replies for ep in reply]

    def _start(self) -> None:
        if self._procs:
            return
        import multiprocessing as mp
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        for _ in range(self.workers - 1):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_eval_worker, args=(there,), daemon=True)
            proc.start()
            there.close()
            self._conns.append(here)
            self._procs.append(proc)

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        for envs in self._envs.values():
            for env in envs:
                env.close()
        self._envs = {}


def _fingerprint(policy) -> str | None:
    """A hash of what a policy's deterministic actions depend on: its class and its parameters, less
    PPO's exploration `log_std` (None for a policy without a state dict, e.g. the trot)."""
    if not hasattr(policy, "state_dict") or not hasattr(policy, "predict"):
        return None
    import hashlib
    digest = hashlib.sha1(type(policy).__qualname__.encode())
    for name, tensor in policy.state_dict().items():
        if name != "log_std":
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _eval_worker(conn) -> None:
    """An EvalPool worker: (env config, pickled policy, seeds) -> the episodes, until None or EOF (the
    training process gone: its end of the pipe closes with it)."""
    import torch

    from training.stopping import ignore_stop_signals
    ignore_stop_signals()                       # the training process decides when evaluation ends
    torch.set_num_threads(1)
    pool = EvalPool(workers=1)
    last: tuple[bytes, Any] | None = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if msg is None:
            break
        cfg, blob, seeds = msg
        try:
            if last is None or last[0] != blob:
                last = (blob, pickle.loads(blob))   # noqa: S301 (written by this pool's own parent process)
            conn.send(pool._run(last[1], cfg, seeds))
        except Exception as exc:               # noqa: BLE001 (re-raised in the training process)
            conn.send(RuntimeError(f"evaluation worker: {type(exc).__name__}: {exc}"))
    pool.close()
    conn.close()


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'episode':>7} {'return':>9} {'speed m/s':>9} {'distance m':>10} {'steps':>6} {'fell':>5}"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows):
        lines.append(f"{i:>7} {r['return']:>9.1f} {r['mean_forward_speed']:>9.3f} {r['forward_distance']:>10.2f} "
                     f"{r['length']:>6} {'yes' if r['fell'] else 'no':>5}")
    return "\n".join(lines)
