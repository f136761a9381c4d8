"""Demonstrations: record an expert with `imitation.data.rollout`, save and load them safely.

DART-style noise injection: the env executes `expert(obs) + N(0, noise)` while the dataset records
the expert's clean action for every visited observation as the label, so BC also sees how the expert
recovers from the states its own small mistakes lead to.

File format (`demonstrations.npz`, loaded with `allow_pickle=False`): `obs` (or `obs_image` and
`obs_state` in camera mode), `acts` (clean labels), `acts_executed`, `rews` (the reward of each
executed action), `last_obs` (each episode's final observation), `episode_lengths`,
`episode_returns`, `episode_speeds`, `episode_falls`, and `meta` (a JSON string: env config,
spaces, source, noise, versions). `transitions()` turns them into (s, a, r, s', done) for off-policy
learning from demonstrations (a fall ends an episode; the time limit does not).
"""

from __future__ import annotations

import json
import pickle
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from imitation.data import rollout, types

import pidog_env
from pidog_env.config import EnvConfig
from pidog_env.gaits import TrotGait
from training.common import (PipelineError, check_finite, check_spaces, describe_space, make_vec_env, versions,
                             with_randomization)
from training.config import DemoConfig

Expert = Callable[[Any], np.ndarray]


@dataclass
class Demonstrations:
    """Flat demonstration arrays plus per-episode statistics and metadata."""

    obs: np.ndarray | dict[str, np.ndarray]
    acts: np.ndarray
    episode_lengths: np.ndarray
    episode_returns: np.ndarray
    episode_speeds: np.ndarray
    episode_falls: np.ndarray
    meta: dict[str, Any]
    acts_executed: np.ndarray | None = None
    rews: np.ndarray | None = None               # per step (files written before they were kept: None)
    last_obs: np.ndarray | None = None           # per episode, vector observations only

    def __len__(self) -> int:
        return len(self.acts)

    def select_episodes(self, keep: np.ndarray) -> "Demonstrations":
        """Subset by episode index (used for the train/validation split)."""
        starts = np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]])
        rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts[keep], self.episode_lengths[keep])])
        pick = (lambda a: a[rows]) if rows.size else (lambda a: a[:0])
        obs = {k: pick(v) for k, v in self.obs.items()} if isinstance(self.obs, dict) else pick(self.obs)
        return Demonstrations(obs, pick(self.acts), self.episode_lengths[keep], self.episode_returns[keep],
                              self.episode_speeds[keep], self.episode_falls[keep], self.meta,
                              None if self.acts_executed is None else pick(self.acts_executed),
                              None if self.rews is None else pick(self.rews),
                              None if self.last_obs is None else self.last_obs[keep])

    def transitions(self) -> dict[str, np.ndarray]:
        """(obs, next_obs, actions, rewards, dones, ends) rows for a replay buffer: the executed actions
        with the rewards they earned; `dones` marks falls only (a time-limit end bootstraps), `ends` every
        episode's last row."""
        if self.rews is None or self.last_obs is None or isinstance(self.obs, dict):
            raise PipelineError("these demonstrations carry no rewards or final observations (recorded before "
                                "they were kept, or camera demonstrations); record them again")
        starts = np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(int)
        next_obs = np.empty_like(self.obs)
        next_obs[:-1] = self.obs[1:]
        ends = starts + self.episode_lengths - 1
        next_obs[ends] = self.last_obs
        dones = np.zeros(len(self.acts), dtype=np.float32)
        dones[ends] = self.episode_falls.astype(np.float32)
        acts = self.acts_executed if self.acts_executed is not None else self.acts
        last = np.zeros(len(self.acts), dtype=bool)
        last[ends] = True
        return {"obs": self.obs, "next_obs": next_obs, "actions": acts, "rewards": self.rews.astype(np.float32),
                "dones": dones, "ends": last}

    def batches(self, batch_size: int, seed: int) -> "ShuffledBatches":
        """Re-iterable shuffled minibatches in the form `imitation`'s BC consumes."""
        return ShuffledBatches(self.obs, self.acts, batch_size, seed)

    def summary(self) -> dict[str, float]:
        return {"episodes": int(len(self.episode_lengths)), "transitions": int(len(self)),
                "mean_return": float(self.episode_returns.mean()),
                "mean_forward_speed": float(self.episode_speeds.mean()),
                "fall_rate": float(self.episode_falls.mean())}


def make_expert(source: str, env_cfg: EnvConfig, allow_pickle: bool = False) -> tuple[Expert, dict]:
    """`"trot"` -> the hard-coded TrotGait; a path -> a saved policy (deterministic actions)."""
    if source == "trot":
        env = gym.make(pidog_env.ENV_ID, config=env_cfg)
        try:
            return TrotGait.for_env(env), {"source": "trot"}
        finally:
            env.close()
    from training.policies import load_policy
    policy, meta = load_policy(source, allow_pickle=allow_pickle)

    def expert(obs):
        return policy.predict(obs, deterministic=True)[0]
    return expert, {"source": str(source), "expert_env_config_hash": meta.get("env_config_hash")}


def generate(cfg: DemoConfig, env_cfg: EnvConfig, seed: int, expert: Expert | None = None,
             progress: bool = True) -> Demonstrations:
    """Record `cfg.n_episodes` episodes of `expert` (DART noise on execution, clean labels)."""
    env_cfg = with_randomization(env_cfg, True)
    extra = {}
    if expert is None:
        expert, extra = make_expert(cfg.source, env_cfg, cfg.allow_pickle)
    venv = make_vec_env(env_cfg, cfg.n_envs, seed, subprocess=cfg.n_envs > 1, for_rollouts=True)
    rng = np.random.default_rng(seed)
    bar = _EpisodeBar(cfg.n_episodes, progress)

    def noisy(obs, state, episode_start):
        clean = np.asarray(expert(obs), dtype=np.float32)
        if cfg.noise > 0:
            clean = np.clip(clean + rng.normal(0, cfg.noise, clean.shape), -1, 1).astype(np.float32)
        return clean, state

    def until(trajs):
        bar.update(len(trajs))
        return len(trajs) >= cfg.n_episodes

    start = time.perf_counter()
    try:
        trajs = rollout.generate_trajectories(noisy, venv, until, rng=rng)[: cfg.n_episodes]
    finally:
        venv.close()
        bar.close()
    obs_space, act_space = venv.observation_space, venv.action_space
    demo = _from_trajectories(trajs, expert)
    demo.meta = {"format": "pidog-demos-v1", "env_config": env_cfg.to_dict(), "env_config_hash": env_cfg.hash(),
                 "observation_space": describe_space(obs_space), "action_space": describe_space(act_space),
                 "source": cfg.source, "noise": cfg.noise, "randomize": True, "seed": seed,
                 "seconds": time.perf_counter() - start, "versions": versions(), **extra}
    return demo


def _from_trajectories(trajs, expert: Expert) -> Demonstrations:
    obs_parts, acts, executed, lengths, returns, speeds, falls = [], [], [], [], [], [], []
    rews, finals = [], []
    for t in trajs:
        obs = t.obs[:-1]
        obs_arr = obs.unwrap() if isinstance(obs, types.DictObs) else obs
        obs_parts.append(obs_arr)
        rews.append(np.asarray(t.rews, dtype=np.float32))
        if not isinstance(t.obs, types.DictObs):
            finals.append(np.asarray(t.obs[-1], dtype=np.float32))
        acts.append(np.asarray(expert(obs_arr), dtype=np.float32))          # clean labels (DART)
        executed.append(t.acts.astype(np.float32))
        lengths.append(len(t.acts))
        returns.append(float(np.sum(t.rews)))
        last = t.infos[-1] if t.infos is not None and len(t.infos) else {}
        speeds.append(float(last.get("mean_forward_speed", 0.0)))
        falls.append(bool(last.get("fell", False)))
    if isinstance(obs_parts[0], dict):
        obs = {k: np.concatenate([o[k] for o in obs_parts]) for k in obs_parts[0]}
    else:
        obs = np.concatenate(obs_parts).astype(np.float32)
    return Demonstrations(obs, np.concatenate(acts), np.array(lengths), np.array(returns), np.array(speeds),
                          np.array(falls), {}, np.concatenate(executed), np.concatenate(rews),
                          np.stack(finals) if len(finals) == len(trajs) else None)


def save(demo: Demonstrations, path: Path) -> None:
    arrays = {"acts": demo.acts, "episode_lengths": demo.episode_lengths, "episode_returns": demo.episode_returns,
              "episode_speeds": demo.episode_speeds, "episode_falls": demo.episode_falls,
              "meta": np.array(json.dumps(demo.meta, default=str))}
    for key in ("acts_executed", "rews", "last_obs"):
        if getattr(demo, key) is not None:
            arrays[key] = getattr(demo, key)
    if isinstance(demo.obs, dict):
        arrays.update({f"obs_{k}": v for k, v in demo.obs.items()})
    else:
        arrays["obs"] = demo.obs
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


REQUIRED = ("acts", "episode_lengths", "episode_returns", "episode_speeds", "episode_falls", "meta")


def load(path: str | Path, obs_space: gym.Space | None = None, act_space: gym.Space | None = None,
         allow_pickle: bool = False) -> Demonstrations:
    """Load `.npz` demonstrations (or, with allow_pickle, a pickled imitation dataset), check that their
    arrays are consistent and finite (`check`) and that they fit the env's spaces."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"demonstrations not found: {path}")
    if not path.is_file():
        raise PipelineError(f"demonstrations {path} is a folder, not a file")
    demo = _load_pickle(path, allow_pickle) if path.suffix in (".pkl", ".pickle") else _load_npz(path)
    if obs_space is not None and act_space is not None:
        check_spaces(f"demonstrations {path.name}", demo.meta, obs_space, act_space)
    check(demo, path, obs_space, act_space)
    return demo


def _load_npz(path: Path) -> Demonstrations:
    if not zipfile.is_zipfile(path):
        raise PipelineError(f"{path} is not an .npz file (demonstrations are the .npz that pidog train and "
                            "imitate write)")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = [k for k in REQUIRED if k not in files] + ([] if {"obs", "obs_state"} & files else ["obs"])
            if missing:
                raise PipelineError(f"{path} is not a demonstrations file: it has no {', '.join(missing)} "
                                    f"array{'s' if len(missing) > 1 else ''}")
            arrays = {k: z[k] for k in files}
    except PipelineError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise PipelineError(f"{path} contains pickled objects; refusing to load it") from None
        raise PipelineError(f"{path} is not a readable demonstrations file: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # zipfile/zlib/OSError on damaged files
        raise PipelineError(f"{path} is not a readable demonstrations file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'damaged'})") from None
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise PipelineError(f"{path}: its meta array is not a JSON object (not written by training/demos.py)")
    obs = arrays["obs"] if "obs" in files else {k[4:]: arrays[k] for k in files if k.startswith("obs_")}
    return Demonstrations(obs, arrays["acts"], arrays["episode_lengths"], arrays["episode_returns"],
                          arrays["episode_speeds"], arrays["episode_falls"], meta,
                          *(arrays.get(k) for k in ("acts_executed", "rews", "last_obs")))


def check(demo: Demonstrations, path: str | Path, obs_space: gym.Space | None = None,
          act_space: gym.Space | None = None) -> None:
    """One-line PipelineError naming `path` and the problem unless the arrays are numeric, finite and
    consistent (one row per step in every per-step array, the episode lengths summing to the steps, one
    entry per episode in every per-episode array) and, given the spaces, the rows fit them."""
    def fail(problem: str):
        raise PipelineError(f"demonstrations {path}: {problem}")

    obs = demo.obs if isinstance(demo.obs, dict) else {"obs": demo.obs}
    steps = {**{k if k == "obs" else f"obs_{k}": v for k, v in obs.items()}, "acts": demo.acts,
             **{k: getattr(demo, k) for k in ("acts_executed", "rews") if getattr(demo, k) is not None}}
    episodes = {k: getattr(demo, k) for k in ("episode_lengths", "episode_returns", "episode_speeds",
                                              "episode_falls", "last_obs") if getattr(demo, k) is not None}
    for name, a in {**steps, **episodes}.items():
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            fail(f"{name} holds {a.dtype} values, not numbers")
        if a.ndim == 0:
            fail(f"{name} is a single value, not an array")
        check_finite(f"demonstrations {path}: {name}", a)
    n = len(demo.acts)
    if n == 0:
        fail("it holds no steps")
    if np.ndim(demo.acts) != 2:
        fail(f"acts has shape {np.shape(demo.acts)}; one row of actions per step expected")
    for name, a in steps.items():
        if len(a) != n:
            fail(f"{name} has {len(a)} rows but acts has {n}: the arrays must have one row per step")
    if demo.acts_executed is not None and np.shape(demo.acts_executed) != np.shape(demo.acts):
        fail(f"acts_executed has shape {np.shape(demo.acts_executed)}, acts {np.shape(demo.acts)}")
    lengths = np.asarray(demo.episode_lengths)
    if lengths.ndim != 1 or not len(lengths):
        fail(f"episode_lengths has shape {lengths.shape}; one length per episode expected")
    wrong = (lengths < 1) | (lengths != np.round(lengths))
    if wrong.any():
        fail(f"episode_lengths must be whole numbers >= 1, got {lengths[wrong][0]}")
    if int(lengths.sum()) != n:
        fail(f"episode_lengths sum to {int(lengths.sum())} steps but acts has {n} rows")
    for name, a in episodes.items():
        if len(a) != len(lengths):
            fail(f"{name} has {len(a)} entries for {len(lengths)} episodes (episode_lengths)")
    if demo.last_obs is not None and not isinstance(demo.obs, dict) and \
            np.shape(demo.last_obs)[1:] != np.shape(demo.obs)[1:]:
        fail(f"last_obs rows have shape {np.shape(demo.last_obs)[1:]}, obs rows {np.shape(demo.obs)[1:]}")
    if obs_space is not None:
        spaces = obs_space.spaces if isinstance(obs_space, gym.spaces.Dict) else {"obs": obs_space}
        if set(spaces) != set(obs):
            fail(f"observations {sorted(obs)} do not fit the env's observation space ({sorted(spaces)})")
        for key, space in spaces.items():
            if np.shape(obs[key])[1:] != space.shape:
                fail(f"{key if key == 'obs' else 'obs_' + key} rows have size {_size(np.shape(obs[key])[1:])}; the "
                     f"env observes {_size(space.shape)}")
    if act_space is not None and np.shape(demo.acts)[1:] != act_space.shape:
        fail(f"acts rows have size {_size(np.shape(demo.acts)[1:])}; the env's actions have {_size(act_space.shape)}")


def _size(shape: tuple) -> str:
    return str(shape[0]) if len(shape) == 1 else str(tuple(shape))


def _load_pickle(path: Path, allow_pickle: bool) -> Demonstrations:
    if not allow_pickle:
        raise PipelineError(f"{path} is a pickle, which can run arbitrary code when loaded; "
                            "pass --allow-pickle if you trust it")
    warnings.warn(f"loading pickled demonstrations from {path} (--allow-pickle)", stacklevel=2)
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301  (explicitly allowed by the user)
    except Exception as exc:  # a damaged or foreign pickle raises anything
        raise PipelineError(f"{path} is not a readable pickle ({type(exc).__name__})") from None
    if isinstance(data, types.TransitionsMinimal):
        obs = data.obs.unwrap() if isinstance(data.obs, types.DictObs) else np.asarray(data.obs)
        acts = np.asarray(data.acts, dtype=np.float32)
        lengths = np.array([len(acts)])
        if getattr(data, "dones", None) is not None and np.any(data.dones):
            ends = np.flatnonzero(data.dones) + 1
            lengths = np.diff(np.concatenate([[0], ends, [len(acts)] if ends[-1] != len(acts) else []])).astype(int)
    elif isinstance(data, (list, tuple)) and data and isinstance(data[0], types.Trajectory):
        flat = rollout.flatten_trajectories(list(data))
        return _load_pickle_from_transitions(flat)
    else:
        raise PipelineError(f"{path}: unsupported pickled object {type(data).__name__} "
                            "(expected imitation Transitions or a list of Trajectory)")
    return _demo_without_meta(obs, acts, lengths)


def _load_pickle_from_transitions(flat: types.Transitions) -> Demonstrations:
    obs = flat.obs.unwrap() if isinstance(flat.obs, types.DictObs) else np.asarray(flat.obs)
    ends = np.flatnonzero(flat.dones) + 1
    lengths = np.diff(np.concatenate([[0], ends])).astype(int)
    return _demo_without_meta(obs, np.asarray(flat.acts, dtype=np.float32), lengths)


def _demo_without_meta(obs, acts: np.ndarray, lengths: np.ndarray) -> Demonstrations:
    """Pickled data carries no metadata: describe its spaces from the arrays so they can be checked."""
    def box(a):
        return {"type": "Box", "shape": list(a.shape[1:])}
    obs_desc = ({"type": "Dict", "spaces": {k: box(v) for k, v in obs.items()}} if isinstance(obs, dict)
                else box(obs))
    meta = {"format": "pickle", "observation_space": obs_desc, "action_space": box(acts), "source": "pickle"}
    n = len(lengths)
    return Demonstrations(obs, acts, lengths, np.zeros(n), np.zeros(n), np.zeros(n, bool), meta)


class ShuffledBatches:
    """Each iteration is one epoch of shuffled, full minibatches `{"obs", "acts"}`.

    imitation's default loader collates sample by sample (and its collate function requires
    `next_obs`, which BC never uses); plain numpy indexing is much faster and needs no copy of the obs.
    """

    def __init__(self, obs, acts: np.ndarray, batch_size: int, seed: int) -> None:
        self.obs, self.acts, self.batch_size = obs, acts, batch_size
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.acts) // self.batch_size)

    def __iter__(self):
        # Every row once per epoch; the last batch is filled up with rows from the epoch's first batch,
        # so every batch has `batch_size` rows (imitation's BC steps its optimizer per full batch).
        n = len(self.acts)
        perm = self.rng.permutation(n)
        perm = np.concatenate([perm, perm[:len(self) * self.batch_size - n]])
        for start in range(0, len(perm), self.batch_size):
            idx = np.sort(perm[start:start + self.batch_size])
            if isinstance(self.obs, dict):
                obs = types.DictObs({k: v[idx] for k, v in self.obs.items()})
            else:
                obs = self.obs[idx]
            yield {"obs": obs, "acts": self.acts[idx]}


class _EpisodeBar:
    """tqdm bar over recorded episodes (quiet when progress=False)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc="demonstrations", unit="episode")

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(max(0, min(n, self.bar.total) - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
