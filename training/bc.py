"""Behavior cloning with `imitation.algorithms.bc.BC` into the exact policy PPO will fine-tune.

Logged per epoch to TensorBoard and CSV (`<out>/bc_logs`): imitation's own `bc/*` metrics (loss,
neglogp, entropy, prob_true_act, l2) and this module's `bc_val/mse` and `bc_val/accuracy` on held-out
episodes. Accuracy for continuous actions: the fraction of held-out steps whose predicted action is
within 0.05 (4.5 deg) of the label on every joint.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from imitation.algorithms.bc import BC
from imitation.util import logger as imit_logger
from stable_baselines3.common.policies import ActorCriticPolicy

from pidog_env.config import EnvConfig
from training.common import make_env
from training.config import BCConfig, PolicyConfig
from training.demos import Demonstrations
from training.policies import make_policy

ACCURACY_TOL = 0.05


@dataclass
class BCResult:
    policy: ActorCriticPolicy
    seconds: float
    curve: list[dict[str, float]] = field(default_factory=list)


def split_episodes(demo: Demonstrations, val_fraction: float, seed: int) -> tuple[Demonstrations, Demonstrations | None]:
    """Hold out whole episodes (not steps) so validation measures generalization to new episodes."""
    n = len(demo.episode_lengths)
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    if n_val == 0 or n_val >= n:
        return demo, None
    order = np.random.default_rng(seed).permutation(n)
    return demo.select_episodes(np.sort(order[n_val:])), demo.select_episodes(np.sort(order[:n_val]))


@torch.no_grad()
def action_error(policy: ActorCriticPolicy, demo: Demonstrations, max_rows: int = 20_000) -> dict[str, float]:
    rows = np.arange(min(len(demo), max_rows))
    obs = {k: v[rows] for k, v in demo.obs.items()} if isinstance(demo.obs, dict) else demo.obs[rows]
    obs_t, _ = policy.obs_to_tensor(obs)
    pred = policy.get_distribution(obs_t).mode().cpu().numpy()
    err = np.abs(pred - demo.acts[rows])
    return {"mse": float((err**2).mean()), "accuracy": float((err.max(axis=1) < ACCURACY_TOL).mean())}


def train_bc(train: Demonstrations, val: Demonstrations | None, env_cfg: EnvConfig, policy_cfg: PolicyConfig,
             cfg: BCConfig, log_dir: Path, seed: int, progress: bool = True) -> BCResult:
    torch.manual_seed(seed)
    env = make_env(env_cfg)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    policy = make_policy(obs_space, act_space, policy_cfg, env_cfg=env_cfg)
    logger = imit_logger.configure(folder=str(log_dir), format_strs=["tensorboard", "csv"])
    batch_size = min(cfg.batch_size, len(train))          # tiny datasets (e.g. --quick) still train
    bc = BC(observation_space=obs_space, action_space=act_space, rng=np.random.default_rng(seed), policy=policy,
            demonstrations=train.batches(batch_size, seed), batch_size=batch_size,
            optimizer_kwargs={"lr": cfg.learning_rate},
            custom_logger=logger, device="cpu")
    batches_per_epoch = max(1, len(train) // batch_size)
    curve: list[dict[str, float]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.epochs, desc="behavior cloning", unit="epoch")

    def on_epoch_end() -> None:
        epoch = len(curve) + 1
        row: dict[str, Any] = {"epoch": epoch}
        if val is not None and (epoch % 5 == 0 or epoch == cfg.epochs or epoch == 1):
            policy.set_training_mode(False)
            metrics = action_error(policy, val)
            policy.set_training_mode(True)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            for k, v in metrics.items():
                logger.record(f"bc_val/{k}", v)
            logger.dump(step=epoch)
        curve.append(row)
        if bar is not None:
            bar.update(1)
            if "val_mse" in row:
                bar.set_postfix(val_mse=f"{row['val_mse']:.4f}", val_acc=f"{row['val_accuracy']:.2f}")

    start = time.perf_counter()
    try:
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad", category=UserWarning)
        bc.train(n_epochs=cfg.epochs, on_epoch_end=on_epoch_end, progress_bar=False,
                 log_interval=batches_per_epoch * 10)
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    seconds = time.perf_counter() - start
    policy.set_training_mode(False)
    return BCResult(policy, seconds, curve)
