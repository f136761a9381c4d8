"""Teacher -> student distillation (DAgger): a deployable policy that infers the robot from its recent past.

The teacher is a PPO policy trained with `env.obs.episode_physics`: its actor sees what the episode drew
(servo strength, masses, friction, calibration, delays, the last push; `pidog_env.randomization.PHYSICS_FEATURES`),
which no robot can measure. The student sees only the deployable observation plus `distill.history` past
frames, and learns to act like the teacher from them (RMA, legged_gym's teacher-student):

1. Collect `distill.steps` / `ITERATIONS` steps over `N_ENVS` randomized episodes. In the first
   iteration the teacher drives; afterwards the student drives (DAgger: the student meets the states its own
   mistakes lead to). Every visited state is labelled with the teacher's deterministic action.
2. Add the batch to the dataset (every iteration's, aggregated) and fit the student's mean action to the
   labels (mean squared error, `EPOCHS` passes, Adam).

The student starts as the teacher without its privileged columns: the first layer's weights on the current
frame are the teacher's, the history columns start at zero, so iteration 0 measures what the missing input
costs. Each iteration logs the student-driven episodes' fall rate and speed (`distill_curve.json`,
TensorBoard under `tensorboard/distill`). The student is saved as `student_policy.pth`, a normal policy file:
`pidog export`, `pidog evaluate` and the robot runtime take it (the runtime keeps the same history buffer).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from pidog_env.env import observation_space
from pidog_env.observation import frame_size
from pidog_env.randomization import PRIVILEGED_SIZE
from training.common import PipelineError, make_env
from training.config import DistillConfig, PolicyConfig
from training.policies import make_policy

SEED_OFFSET = 500_000          # collection episodes' seeds: seed + SEED_OFFSET + episode number
# The DAgger loop's constants (RMA and legged_gym's teacher-student use similar ones; none was tuned here).
ITERATIONS = 8                 # collection rounds over `distill.steps`: the teacher drives the first
N_ENVS = 16                    # randomized envs stepped in lockstep while collecting
EPOCHS = 4                     # passes over the aggregated dataset per iteration
BATCH_SIZE = 512               # regression minibatch
LEARNING_RATE = 1e-3           # Adam


def student_config(teacher_cfg: EnvConfig, history: int) -> EnvConfig:
    """The student's env: the teacher's, without the privileged input, with `history` past frames."""
    cfg = config_tree.apply(teacher_cfg, "obs.episode_physics", False)
    return config_tree.apply(cfg, "obs.history", history)


def check_teacher(teacher_cfg: EnvConfig, history: int) -> None:
    if not teacher_cfg.obs.episode_physics:
        raise PipelineError("distillation needs a teacher trained with env.obs.episode_physics=true")
    if teacher_cfg.use_camera:
        raise PipelineError("distillation supports vector observations only (not env.use_camera)")
    if teacher_cfg.obs.history > history:
        raise PipelineError(f"the student's distill.history ({history}) must be at least the teacher's "
                            f"env.obs.history ({teacher_cfg.obs.history})")


class Views:
    """Slices of the collection env's observation ((history + 1) frames, then the privileged input) into the
    teacher's and the student's observations."""

    def __init__(self, teacher_cfg: EnvConfig, history: int) -> None:
        frame = frame_size(teacher_cfg.obs.ultrasonic, teacher_cfg.command.enabled)
        self.teacher_frames = frame * (teacher_cfg.obs.history + 1)
        self.student = frame * (history + 1)

    def teacher(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs[:, :self.teacher_frames], obs[:, -PRIVILEGED_SIZE:]], axis=1)

    def of_student(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, :self.student]


def blind_demonstrations(demo):
    """The demonstrations with the privileged input zeroed. The trot ignores it, but 50 episodes hold only 50
    draws of it, and behavior cloning on it fits each episode's physics (the cloned teacher walked 0.087 m/s
    against 0.107 without the input): the teacher starts from the deployable gait and PPO learns to use it."""
    import dataclasses

    def blind(a):
        if a is None:
            return None
        a = a.copy()
        a[..., -PRIVILEGED_SIZE:] = 0.0
        return a
    return dataclasses.replace(demo, obs=blind(demo.obs), last_obs=blind(demo.last_obs))


def zero_privileged_weights(policy) -> None:
    """The first layer's weights on the privileged input set to zero (in the actor and the critic): a policy
    cloned from `blind_demonstrations` then acts the same whatever the input holds."""
    with torch.no_grad():
        for net in (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net):
            net[0].weight[:, -PRIVILEGED_SIZE:] = 0.0


def mean_action(policy, obs: torch.Tensor) -> torch.Tensor:
    """The policy's deterministic (mean) action, unclipped, differentiable."""
    return policy.get_distribution(obs).distribution.mean


def init_student(student, teacher, views: Views) -> None:
    """The teacher's weights where they fit; in the first layer of each network the current frame's columns
    (and the teacher's own history columns) are the teacher's, the student's extra history columns zero."""
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        tv = t_state.get(key)
        if tv is None:
            continue
        if tv.shape == value.shape:
            s_state[key] = tv.clone()
        elif value.dim() == 2 and tv.dim() == 2 and tv.shape[0] == value.shape[0]:    # a first layer
            w = torch.zeros_like(value)
            w[:, :views.teacher_frames] = tv[:, :views.teacher_frames]
            s_state[key] = w
    student.load_state_dict(s_state)


def collect(envs: list, driver, teacher, views: Views, steps: int, state: dict[str, Any]) -> dict[str, Any]:
    """`steps` env steps over `envs` in lockstep; returns the student observations, the teacher's labels and
    the finished episodes' figures. `state` carries the envs' observations and seeds between iterations."""
    n = len(envs)
    xs, ys, speeds, falls = [], [], [], []
    for _ in range(-(-steps // n)):
        obs = state["obs"]
        with torch.no_grad():
            label = teacher_act(teacher, views.teacher(obs))
            act = label if driver is None else mean_action(driver, torch.as_tensor(views.of_student(obs))).numpy()
        xs.append(views.of_student(obs).copy())
        ys.append(label)
        act = np.clip(act, -1.0, 1.0)
        for i, env in enumerate(envs):
            o, _, terminated, truncated, info = env.step(act[i])
            if terminated or truncated:
                speeds.append(info["mean_forward_speed"])
                falls.append(float(info["fell"]))
                state["episode"] += 1
                o, _ = env.reset(seed=state["seed"] + state["episode"])
            obs[i] = o
    return {"obs": np.concatenate(xs), "labels": np.concatenate(ys), "episodes": len(falls),
            "fall_rate": float(np.mean(falls)) if falls else None,
            "mean_forward_speed": float(np.mean(speeds)) if speeds else None}


def teacher_act(teacher, obs: np.ndarray) -> np.ndarray:
    return np.clip(mean_action(teacher, torch.as_tensor(obs)).numpy(), -1.0, 1.0)


def fit(student, optimizer, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
        rng: np.random.Generator) -> float:
    """`epochs` passes of MSE regression of the student's mean action onto the labels; the last pass's loss."""
    xt, yt = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float32)
    student.set_training_mode(True)
    loss_sum = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        loss_sum, batches = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = torch.as_tensor(order[i:i + batch_size])
            loss = torch.nn.functional.mse_loss(mean_action(student, xt[idx]), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, batches = loss_sum + loss.item(), batches + 1
        loss_sum /= max(1, batches)
    student.set_training_mode(False)
    return loss_sum


def distill(teacher, teacher_cfg: EnvConfig, dcfg: DistillConfig, policy_cfg: PolicyConfig, seed: int,
            log=print, writer=None, iterations: int = ITERATIONS, n_envs: int = N_ENVS,
            epochs: int = EPOCHS) -> tuple[Any, EnvConfig, dict[str, Any]]:
    """DAgger from `teacher` (a policy on `teacher_cfg`'s observation); returns (student, its env config,
    the per-iteration curve and totals). `iterations`, `n_envs` and `epochs` are the module's constants
    (the tests make them small)."""
    check_teacher(teacher_cfg, dcfg.history)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    views = Views(teacher_cfg, dcfg.history)
    s_cfg = student_config(teacher_cfg, dcfg.history)
    collect_cfg = config_tree.apply(teacher_cfg, "obs.history", dcfg.history)
    student = make_policy(observation_space(s_cfg), teacher.action_space, policy_cfg, env_cfg=s_cfg)
    init_student(student, teacher, views)
    student.set_training_mode(False)
    optimizer = torch.optim.Adam(student.parameters(), lr=LEARNING_RATE)
    envs = [make_env(collect_cfg) for _ in range(n_envs)]
    per_iteration = max(1, dcfg.steps // iterations)
    state = {"seed": seed + SEED_OFFSET, "episode": len(envs) - 1}
    state["obs"] = np.stack([env.reset(seed=state["seed"] + i)[0] for i, env in enumerate(envs)])
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    curve: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=iterations, desc="distilling (DAgger)", unit="iteration")
        for it in range(iterations):
            driver = None if it == 0 else student           # the teacher drives first, then the student
            batch = collect(envs, driver, teacher, views, per_iteration, state)
            xs.append(batch["obs"])
            ys.append(batch["labels"])
            x, y = np.concatenate(xs), np.concatenate(ys)
            loss = fit(student, optimizer, x, y, epochs, BATCH_SIZE, rng)
            row = {"iteration": it, "driver": "teacher" if driver is None else "student", "dataset": len(x),
                   "loss": round(loss, 6), "episodes": batch["episodes"], "fall_rate": batch["fall_rate"],
                   "mean_forward_speed": batch["mean_forward_speed"],
                   "seconds": round(time.perf_counter() - t0, 1)}
            curve.append(row)
            if writer is not None:
                writer(it, row)
            speed = "no episode ended" if row["mean_forward_speed"] is None else f"{row['mean_forward_speed']:.3f} m/s"
            falls = "" if row["fall_rate"] is None else f", falls {row['fall_rate']:.0%} of {row['episodes']}"
            bar.update(1)
            with tqdm.external_write_mode():          # the line above the bar, not inside it
                log(f"distill {it + 1}/{iterations}: {row['driver']} drove, {speed}{falls}; "
                    f"dataset {len(x):,} steps, action MSE {loss:.5f}")
        bar.close()
    finally:
        for env in envs:
            env.close()
    return student, s_cfg, {"curve": curve, "seconds": round(time.perf_counter() - t0, 1),
                            "dataset_steps": int(sum(len(a) for a in xs)), "history": dcfg.history}
