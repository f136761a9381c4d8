"""Small shared pieces: the pipeline's error type, version stamps, space descriptions, env factories."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import pidog_env  # registers ENV_ID
from pidog_env import config_tree
from pidog_env.config import EnvConfig


class PipelineError(Exception):
    """A user-facing problem (bad flag, missing or mismatched file): reported as one line, exit code 2."""


def versions() -> dict[str, str]:
    import gymnasium
    import imitation
    import mujoco
    import stable_baselines3
    import torch
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__,
            "stable_baselines3": stable_baselines3.__version__, "imitation": imitation.__version__}


def checkout_state() -> tuple[str | None, list[str]]:
    """(HEAD, the tracked files that differ from it) of the checkout this project runs from; (None, []) without
    git (an installed copy, the Docker image)."""
    import subprocess
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    except (OSError, subprocess.SubprocessError):
        return None, []
    return commit, changed


def check_finite(what: str, values: Any) -> None:
    """A one-line PipelineError when `values` (an array) holds NaN or inf; integer arrays always pass."""
    a = np.asarray(values)
    if a.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise PipelineError(f"{what} holds {int(bad.sum())} non-finite value(s) (NaN or inf), the first at index "
                            f"{where[0] if len(where) == 1 else list(where)}")


def check_output_dir(path: str | Path, flag: str) -> None:
    """A one-line PipelineError unless `path` is (or can be created as) a folder this user can write in."""
    from pidog_env.files import output_dir_problem
    problem = output_dir_problem(path)
    if problem:
        raise PipelineError(f"{flag} {problem}")


def describe_space(space: gym.Space) -> dict[str, Any]:
    """JSON-able description of a Box or Dict space, for metadata and mismatch messages."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: describe_space(v) for k, v in space.spaces.items()}}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": float(np.min(space.low)), "high": float(np.max(space.high))}
    raise PipelineError(f"unsupported space {space}")


def check_spaces(what: str, meta: dict, obs_space: gym.Space, act_space: gym.Space) -> None:
    """Raise a one-line PipelineError if `meta`'s recorded spaces differ from the env's."""
    for name, space in (("observation_space", obs_space), ("action_space", act_space)):
        want, got = describe_space(space), meta.get(name)
        if not _same_space(got, want):
            raise PipelineError(f"{what} {name} {_short(got)} does not match the env's {_short(want)}")


def _same_space(got: Any, want: dict) -> bool:
    """Type and shape must match; dtype and bounds too where both sides record them (pickles do not)."""
    if not isinstance(got, dict) or got.get("type") != want["type"]:
        return False
    if want["type"] == "Dict":
        g = got.get("spaces", {})
        return set(g) == set(want["spaces"]) and all(_same_space(g[k], v) for k, v in want["spaces"].items())
    return all(got[k] == want[k] for k in ("shape", "dtype", "low", "high") if k in got)


def _short(desc: Any) -> str:
    if not isinstance(desc, dict):
        return repr(desc)
    if desc.get("type") == "Dict":
        return "Dict(" + ", ".join(f"{k}={_short(v)}" for k, v in desc["spaces"].items()) + ")"
    return f"Box{tuple(desc.get('shape', ()))}"


def with_randomization(cfg: EnvConfig, on: bool) -> EnvConfig:
    """A copy of `cfg` with domain randomization switched on or off."""
    return config_tree.apply(cfg, "randomization.enabled", on)


def make_env(cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    return gym.make(pidog_env.ENV_ID, config=cfg, render_mode=render_mode)


def make_vec_env(cfg: EnvConfig, n_envs: int, seed: int, subprocess: bool = True, for_rollouts: bool = False,
                 intervention: str = "none", kind: str = "batched", intervention_penalty: float = 0.0):
    """`n_envs` copies of the env, each behind a Monitor: in worker processes unless `subprocess` is
    False (or there is one env). `kind`: "batched" (training.vec_env.BatchedSubprocVecEnv: a few
    workers, shared-memory observations) or "subproc" (SB3's SubprocVecEnv: one process per env).

    Worker processes ignore SIGINT/SIGTERM (a Ctrl-C or `kill -- -PGID` reaches the whole process
    group): the main process stops them when it is done with them (see training.stopping).
    `for_rollouts` adds imitation's RolloutInfoWrapper (needed to record demonstrations; it keeps every
    observation of the episode, which training does not need); `intervention` the expert's takeovers, each
    costing the learner `intervention_penalty` (expert takeovers only)."""
    from functools import partial

    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    wrapper = None
    if for_rollouts:
        from imitation.data.wrappers import RolloutInfoWrapper
        wrapper = RolloutInfoWrapper
    elif intervention == "expert":           # the expert takes over near a fall (training.interventions)
        from training.interventions import ExpertIntervention
        wrapper = partial(ExpertIntervention, penalty=intervention_penalty)
    elif intervention == "keyboard":         # a person hands control to the expert from the viewer
        from training.interventions import KeyboardIntervention
        wrapper = KeyboardIntervention
        factory = partial(make_env, cfg, render_mode="human")
        return sb3_make_vec_env(factory, n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv, wrapper_class=wrapper)
    in_workers = subprocess and n_envs > 1
    factory = partial(_worker_env, cfg, os.getpid()) if in_workers else partial(make_env, cfg)
    if not in_workers:
        cls = DummyVecEnv
    elif kind == "batched":
        from training.vec_env import BatchedSubprocVecEnv
        cls = BatchedSubprocVecEnv
    elif kind == "subproc":
        cls = SubprocVecEnv
    else:
        raise ValueError(f"unknown vec env kind {kind!r}")
    return sb3_make_vec_env(factory, n_envs=n_envs, seed=seed, vec_env_cls=cls, wrapper_class=wrapper)


def _worker_env(cfg: EnvConfig, creator_pid: int) -> gym.Env:
    """An env made in a worker process, which leaves stop signals to the main process (the batched
    vector env also makes some of its envs in the main process itself: those change nothing)."""
    if os.getpid() != creator_pid:
        from training.stopping import ignore_stop_signals
        ignore_stop_signals()
    return make_env(cfg)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str))
