"""BatchedSubprocVecEnv: SB3's SubprocVecEnv, with fewer processes and no observation pickling.

SB3's SubprocVecEnv runs one process per env and, every step, pickles each env's observation through
its own pipe. On a machine with fewer cores than envs (the project's 2-core reference machine runs 4
PPO envs) the processes take turns on the cores: the training process, waking one worker after the
other, is preempted by the first before it has woken the next, and every step pays 2 x n_envs pipe
messages. Here the envs are split into one block per core:

- the training process steps the first block itself, while one worker process per other block steps
  its envs (one message each way per step): as many busy processes as cores, none waiting for a core;
- actions and observations travel through shared memory (one array per observation key, written in
  place); only rewards, dones and the info dicts are pickled;
- the SB3 VecEnv contract is kept: auto-reset with `terminal_observation` and `TimeLimit.truncated`
  in the info, `reset_infos`, per-env seeds and options, get/set_attr, env_method, env_is_wrapped,
  render. The results equal DummyVecEnv's step for step (tests/test_vec_env.py);
  `bench/ppo_throughput.py` measures it against SubprocVecEnv in the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnv, VecEnvIndices
from stable_baselines3.common.vec_env.patch_gym import _patch_env


def _layout(space: spaces.Space) -> dict[str | None, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each observation array: one for a Box (key None), one per key for a Dict."""
    if isinstance(space, spaces.Box):
        return {None: (space.shape, space.dtype)}
    if isinstance(space, spaces.Dict) and all(isinstance(s, spaces.Box) for s in space.spaces.values()):
        return {key: (s.shape, s.dtype) for key, s in space.spaces.items()}
    raise TypeError(f"BatchedSubprocVecEnv supports Box and Dict-of-Box observations, not {space}")


def _views(buffers: dict, layout: dict, n_envs: int) -> dict[str | None, np.ndarray]:
    return {key: np.frombuffer(buffers[key], dtype=dtype).reshape((n_envs, *shape))
            for key, (shape, dtype) in layout.items()}


def _write(views: dict[str | None, np.ndarray], i: int, obs: Any) -> None:
    if None in views:
        views[None][i] = obs
    else:
        for key, view in views.items():
            view[i] = obs[key]


def _worker(remote, parent_remote, env_fns: CloudpickleWrapper, first: int, n_envs: int,
            obs_buffers: dict, act_buffer, obs_layout: dict, act_shape: tuple, act_dtype: np.dtype) -> None:
    parent_remote.close()
    envs = [_patch_env(fn()) for fn in env_fns.var]
    obs_views = _views(obs_buffers, obs_layout, n_envs)
    actions = np.frombuffer(act_buffer, dtype=act_dtype).reshape((n_envs, *act_shape))
    mine = range(first, first + len(envs))
    while True:
        try:
            cmd, data = remote.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if cmd == "step":
            remote.send(_step_block(envs, mine, actions, obs_views))
        elif cmd == "reset":                        # data: [(seed, options)] for this worker's envs
            remote.send(_reset_block(envs, mine, data, obs_views))
        elif cmd == "close":
            for env in envs:
                env.close()
            remote.close()
            break
        else:                                       # per-env calls: data = (local indices, payload)
            local, payload = data
            targets = [envs[j] for j in local]
            try:                                    # an error goes back to the caller, the worker stays
                reply: Any = _local_call(cmd, payload, targets)
            except Exception as exc:               # noqa: BLE001 (re-raised in the main process)
                reply = exc
            remote.send(reply)


def _step_block(envs: list[gym.Env], indices: range, actions: np.ndarray, obs_views: dict) -> list[tuple]:
    """Step envs[k] with actions[indices[k]] (SB3's auto-reset); observations into obs_views."""
    out = []
    for i, env in zip(indices, envs):
        obs, reward, terminated, truncated, info = env.step(actions[i].copy())
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info: dict = {}
        if done:
            info["terminal_observation"] = obs
            obs, reset_info = env.reset()
        _write(obs_views, i, obs)
        out.append((reward, done, info, reset_info))
    return out


def _reset_block(envs: list[gym.Env], indices: range, seeds_options: list[tuple], obs_views: dict) -> list[dict]:
    out = []
    for i, env, (seed, options) in zip(indices, envs, seeds_options):
        obs, reset_info = env.reset(seed=seed, **({"options": options} if options else {}))
        _write(obs_views, i, obs)
        out.append(reset_info)
    return out


def _local_call(cmd: str, payload: Any, targets: list[gym.Env]) -> list[Any]:
    from stable_baselines3.common.env_util import is_wrapped
    if cmd == "render":
        return [env.render() for env in targets]
    if cmd == "env_method":
        name, args, kwargs = payload
        return [env.get_wrapper_attr(name)(*args, **kwargs) for env in targets]
    if cmd == "get_attr":
        return [env.get_wrapper_attr(payload) for env in targets]
    if cmd == "has_attr":
        return [_has_attr(env, payload) for env in targets]
    if cmd == "set_attr":
        for env in targets:
            setattr(env, payload[0], payload[1])
        return [None] * len(targets)
    if cmd == "is_wrapped":
        return [is_wrapped(env, payload) for env in targets]
    raise NotImplementedError(f"unknown command {cmd!r}")


def _has_attr(env: gym.Env, name: str) -> bool:
    try:
        env.get_wrapper_attr(name)
        return True
    except AttributeError:
        return False


def default_workers(n_envs: int) -> int:
    return max(1, min(n_envs, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class BatchedSubprocVecEnv(VecEnv):
    """`len(env_fns)` envs in blocks of consecutive envs, one block per core (`n_blocks`, at most one
    per env): the first stepped by this process, each other by a worker process; observations and
    actions in shared memory. A drop-in for SubprocVecEnv (same start method: forkserver)."""

    def __init__(self, env_fns: list[Callable[[], gym.Env]], n_blocks: int | None = None,
                 start_method: str | None = None) -> None:
        n_envs = len(env_fns)
        n_blocks = min(n_envs, n_blocks or default_workers(n_envs))
        bounds = np.linspace(0, n_envs, n_blocks + 1).round().astype(int)
        self._blocks = [range(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self._local = [_patch_env(env_fns[i]()) for i in self._blocks[0]]        # stepped here
        observation_space, action_space = self._local[0].observation_space, self._local[0].action_space
        if not isinstance(action_space, spaces.Box):
            raise TypeError(f"BatchedSubprocVecEnv supports Box actions, not {action_space}")
        self._obs_layout = _layout(observation_space)
        ctx = mp.get_context(start_method or ("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"))
        obs_buffers = {key: ctx.RawArray("b", int(np.prod((n_envs, *shape))) * np.dtype(dtype).itemsize)
                       for key, (shape, dtype) in self._obs_layout.items()}
        act_buffer = ctx.RawArray("b", int(np.prod((n_envs, *action_space.shape))) * action_space.dtype.itemsize)
        self._obs = _views(obs_buffers, self._obs_layout, n_envs)
        self._actions = np.frombuffer(act_buffer, dtype=action_space.dtype).reshape((n_envs, *action_space.shape))
        self.remotes, self.processes = [], []
        for block in self._blocks[1:]:
            remote, work_remote = ctx.Pipe()
            args = (work_remote, remote, CloudpickleWrapper([env_fns[i] for i in block]), block.start, n_envs,
                    obs_buffers, act_buffer, self._obs_layout, action_space.shape, action_space.dtype)
            process = ctx.Process(target=_worker, args=args, daemon=True)
            process.start()
            work_remote.close()
            self.remotes.append(remote)
            self.processes.append(process)
        self.waiting = self.closed = False
        super().__init__(n_envs, observation_space, action_space)

    # ---------------------------------------------------------------- stepping
    def step_async(self, actions: np.ndarray) -> None:
        self._actions[:] = np.asarray(actions).reshape(self._actions.shape)
        for remote in self.remotes:
            remote.send(("step", None))
        self.waiting = True

    def step_wait(self):
        results = _step_block(self._local, self._blocks[0], self._actions, self._obs)   # while workers step
        for remote in self.remotes:
            results += remote.recv()
        self.waiting = False
        rewards, dones, infos, self.reset_infos = zip(*results)
        return (self._observations(), np.array(rewards, dtype=np.float32), np.array(dones, dtype=bool),
                list(infos))

    def reset(self):
        seeds_options = [(self._seeds[i], self._options[i]) for i in range(self.num_envs)]
        for block, remote in zip(self._blocks[1:], self.remotes):
            remote.send(("reset", seeds_options[block.start:block.stop]))
        infos = _reset_block(self._local, self._blocks[0], seeds_options, self._obs)
        for remote in self.remotes:
            infos += remote.recv()
        self.reset_infos = infos
        self._reset_seeds()
        self._reset_options()
        return self._observations()

    def _observations(self):
        if None in self._obs:
            return self._obs[None].copy()
        return {key: view.copy() for key, view in self._obs.items()}

    def close(self) -> None:
        if self.closed:
            return
        if self.waiting:
            for remote in self.remotes:
                remote.recv()
        for remote in self.remotes:
            remote.send(("close", None))
        for process in self.processes:
            process.join()
        for remote in self.remotes:
            remote.close()
        for env in self._local:
            env.close()
        self.closed = True

    # ---------------------------------------------------------------- per-env calls
    def _call(self, cmd: str, payload: Any, indices: VecEnvIndices) -> list[Any]:
        wanted = list(self._get_indices(indices))
        found: dict[int, Any] = {}
        asked = []
        for block, remote in zip(self._blocks[1:], self.remotes):
            mine = [i for i in wanted if i in block]
            if mine:
                remote.send((cmd, ([i - block.start for i in mine], payload)))
                asked.append((remote, mine))
        local = [i for i in wanted if i in self._blocks[0]]
        if local:
            found.update(zip(local, _local_call(cmd, payload, [self._local[i] for i in local])))
        for remote, mine in asked:
            reply = remote.recv()
            if isinstance(reply, Exception):
                raise reply
            found.update(zip(mine, reply))
        return [found[i] for i in wanted]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return self._call("render", None, None)

    def has_attr(self, attr_name: str) -> bool:
        return all(self._call("has_attr", attr_name, None))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._call("get_attr", attr_name, indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._call("set_attr", (attr_name, value), indices)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return self._call("env_method", (method_name, method_args, method_kwargs), indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return self._call("is_wrapped", wrapper_class, indices)
