"""PPO with the three BC -> PPO hand-off fixes built in.

1. `init_log_std`: BC's likelihood objective collapses the policy std (1.0 -> ~0.01); it is reset
   before fine-tuning (done by the caller, `reset_log_std`).
2. Critic warm-up: the value head is untrained after BC. For `value_warmup_steps` env steps only the
   critic learns (actor learning rate 0); then the actor's rate ramps linearly to full over
   `actor_ramp_steps`. The optimizer has separate "actor" and "critic" parameter groups for this.
3. Forgetting: an auxiliary BC loss (MSE between the policy's mean action and the demonstration
   action on a demo minibatch), weighted `bc_coef` at the start and decaying linearly to zero over
   `bc_decay_steps` env steps (DAPG-style).

"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F


BC_BATCH_SIZE = 256            # demonstration rows per auxiliary BC batch


class HandoffPPO(PPO):
    def __init__(self, *args: Any, value_warmup_steps: int = 0, actor_ramp_steps: int = 0, bc_coef: float = 0.0,
                 bc_decay_steps: int = 1, bc_demos: tuple[Any, np.ndarray] | None = None,
                 bc_batch_size: int = BC_BATCH_SIZE, **kwargs: Any) -> None:
        self.value_warmup_steps = value_warmup_steps
        self.actor_ramp_steps = actor_ramp_steps
        self.bc_coef = bc_coef if bc_demos is not None else 0.0
        self.bc_decay_steps = max(1, bc_decay_steps)
        self.bc_demos = bc_demos
        self.bc_batch_size = bc_batch_size
        super().__init__(*args, **kwargs)

    # ---------------------------------------------------------------- schedules
    def actor_lr_scale(self) -> float:
        t = self.num_timesteps - self.value_warmup_steps
        if t < 0:
            return 0.0
        if self.actor_ramp_steps <= 0:
            return 1.0
        return min(1.0, t / self.actor_ramp_steps)

    def bc_weight(self) -> float:
        return self.bc_coef * max(0.0, 1.0 - self.num_timesteps / self.bc_decay_steps)

    # ---------------------------------------------------------------- setup
    def _setup_model(self) -> None:
        super()._setup_model()
        p = self.policy
        encoder = list(p.features_extractor.parameters())
        if not p.share_features_extractor:
            encoder += list(p.pi_features_extractor.parameters())
        actor = list(p.mlp_extractor.policy_net.parameters()) + list(p.action_net.parameters())
        if isinstance(getattr(p, "log_std", None), th.nn.Parameter):
            actor.append(p.log_std)
        # The shared image encoder moves the actor's output, so it belongs to the actor's schedule.
        actor_ids = {id(q) for q in actor + encoder}
        critic = [q for q in p.parameters() if id(q) not in actor_ids and q.requires_grad]
        lr = self.lr_schedule(1.0)
        p.optimizer = p.optimizer_class(
            [{"params": actor + encoder, "name": "actor"}, {"params": critic, "name": "critic"}],
            lr=lr, **p.optimizer_kwargs)

    def _update_learning_rate(self, optimizers: Any) -> None:
        lr = self.lr_schedule(self._current_progress_remaining)
        scale = self.actor_lr_scale()
        self.logger.record("train/learning_rate", lr)
        self.logger.record("handoff/actor_lr_scale", scale)
        for group in self.policy.optimizer.param_groups:
            group["lr"] = lr * scale if group.get("name") == "actor" else lr

    def _bc_batch(self) -> tuple[Any, th.Tensor]:
        obs, acts = self.bc_demos
        idx = np.random.randint(0, len(acts), self.bc_batch_size)
        batch_obs = {k: v[idx] for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]
        obs_t, _ = self.policy.obs_to_tensor(batch_obs)
        return obs_t, th.as_tensor(acts[idx], device=self.device)

    # ---------------------------------------------------------------- update
    def train(self) -> None:
        """SB3's PPO update (value clipping and target_kl included), plus the critic-only warm-up and the
        decaying BC loss. With both off it is SB3's update step for step (tests/test_handoff.py)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_vf = self.clip_range_vf(self._current_progress_remaining) if self.clip_range_vf is not None else None
        critic_only = self.actor_lr_scale() == 0.0
        bc_w = self.bc_weight()
        ent_w = float(self.ent_coef)
        logs: dict[str, list[float]] = {k: [] for k in ("pg", "value", "entropy", "kl", "clip", "bc")}
        continue_training = True
        for _ in range(self.n_epochs):
            for data in self.rollout_buffer.get(self.batch_size):
                actions = data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.long().flatten()
                values, log_prob, entropy = self.policy.evaluate_actions(data.observations, actions)
                values = values.flatten()
                adv = data.advantages
                if self.normalize_advantage and len(adv) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                ratio = th.exp(log_prob - data.old_log_prob)
                pg_loss = -th.min(adv * ratio, adv * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
                if clip_vf is not None:             # values move at most clip_vf from the rollout's
                    values = data.old_values + th.clamp(values - data.old_values, -clip_vf, clip_vf)
                value_loss = F.mse_loss(data.returns, values)
                entropy_loss = -th.mean(entropy) if entropy is not None else th.mean(log_prob)
                if critic_only:
                    loss = self.vf_coef * value_loss
                else:
                    loss = pg_loss + ent_w * entropy_loss + self.vf_coef * value_loss
                    if bc_w > 0:
                        obs_t, demo_acts = self._bc_batch()
                        mean = self.policy.get_distribution(obs_t).mode()
                        bc_loss = F.mse_loss(mean, demo_acts)
                        loss = loss + bc_w * bc_loss
                        logs["bc"].append(bc_loss.item())
                with th.no_grad():
                    log_ratio = log_prob - data.old_log_prob
                    kl = th.mean((th.exp(log_ratio) - 1) - log_ratio).item()
                logs["pg"].append(pg_loss.item())
                logs["value"].append(value_loss.item())
                logs["entropy"].append(entropy_loss.item())
                logs["kl"].append(kl)
                logs["clip"].append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                if self.target_kl is not None and kl > 1.5 * self.target_kl and not critic_only:
                    continue_training = False
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        ev = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        rec = self.logger.record
        rec("train/policy_gradient_loss", float(np.mean(logs["pg"])))
        rec("train/value_loss", float(np.mean(logs["value"])))
        rec("train/entropy_loss", float(np.mean(logs["entropy"])))
        rec("train/approx_kl", float(np.mean(logs["kl"])))
        rec("train/clip_fraction", float(np.mean(logs["clip"])))
        rec("train/explained_variance", float(ev))
        rec("train/clip_range", clip_range)
        if clip_vf is not None:
            rec("train/clip_range_vf", clip_vf)
        rec("train/n_updates", self._n_updates, exclude="tensorboard")
        if hasattr(self.policy, "log_std"):
            rec("train/std", th.exp(self.policy.log_std).mean().item())
        rec("handoff/critic_only", float(critic_only))
        rec("handoff/bc_weight", bc_w)
        rec("train/ent_coef", ent_w)
        if logs["bc"]:
            rec("handoff/bc_loss", float(np.mean(logs["bc"])))


def reset_log_std(model: PPO, value: float) -> None:
    with th.no_grad():
        model.policy.log_std.fill_(value)


class RewardNormalizer:
    """SB3's VecNormalize on rewards only, with its statistics saved as JSON (no pickle) for --resume."""

    STATS = "reward_normalizer.json"

    @staticmethod
    def wrap(venv, gamma: float, restore_from=None):
        import json
        from stable_baselines3.common.vec_env import VecNormalize
        wrapped = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=gamma, clip_reward=10.0)
        if restore_from is not None and (restore_from / RewardNormalizer.STATS).is_file():
            stats = json.loads((restore_from / RewardNormalizer.STATS).read_text())
            wrapped.ret_rms.mean = np.float64(stats["mean"])
            wrapped.ret_rms.var = np.float64(stats["var"])
            wrapped.ret_rms.count = stats["count"]
        return wrapped

    @staticmethod
    def save(venv, directory) -> None:
        import json
        from stable_baselines3.common.vec_env import VecNormalize
        if isinstance(venv, VecNormalize):
            rms = venv.ret_rms
            (directory / RewardNormalizer.STATS).write_text(json.dumps(
                {"mean": float(np.asarray(rms.mean)), "var": float(np.asarray(rms.var)), "count": float(rms.count)}))
