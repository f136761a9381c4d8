"""SAC fine-tuning from a BC policy: the actor loss with a decaying pull towards the BC policy, and
critics with LayerNorm.

Without help, SAC from a BC actor loses BC's gait within a few thousand steps of the actor's release:
the actor climbs the gradient of a critic that has seen ~10k on-policy transitions and over-estimates
actions it has never tried. Two standard remedies:

* **Prior term (kickstarting / TD3+BC).** The actor loss is

      (ent_coef * log pi(a|s) - min Q(s, a)) / mean|Q|  +  bc_coef(t) * |mu(s) - a_BC(s)|^2

  on every batch state s (demonstrations and online data): the SAC objective scaled to order 1 by the
  batch's mean |Q| (TD3+BC's normalization, so `bc_coef` means the same whatever the reward scale), plus
  the squared distance of the actor's mean action from the BC policy's action. `bc_coef` falls linearly
  to 0 over `bc_decay_steps` env steps from the actor's release, so the teacher guides the start and
  lets go later (as `ppo.bc_coef` does in the PPO hand-off).
* **LayerNorm critics** (RLPD, `training.policies.layer_norm_critics`): a LayerNorm after every hidden
  layer of the Q networks bounds how far Q can extrapolate to actions outside the data.

`SACWithPrior.train` is SB3's `SAC.train` with that actor loss; the critic and entropy updates are
SB3's. Variants measured and not adopted (a constraint instead of the decay, acting by Q, REDQ's
ensemble split, two timescales, conservative critics, a centred entropy term, delayed actor updates,
offline critic pre-training) are in the research record (CHANGELOG.md).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import SAC
from stable_baselines3.common.utils import polyak_update


class SACWithPrior(SAC):
    """SAC whose actor is pulled towards `prior(obs) -> actions` with weight `bc_coef(env_steps)`."""

    def __init__(self, *args, prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 bc_coef: float = 0.0, bc_decay_steps: int = 1, release_step: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prior, self.bc_coef0 = prior, bc_coef
        self.bc_decay_steps, self.release_step = max(1, bc_decay_steps), release_step

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "prior"]

    def current_bc_coef(self) -> float:
        """The prior's weight now: `bc_coef` until the release, then falling linearly to 0."""
        if self.prior is None:
            return 0.0
        done = max(0, self.num_timesteps - self.release_step)
        return self.bc_coef0 * max(0.0, 1.0 - done / self.bc_decay_steps)

    def _critic_step(self, data, ent_coef: torch.Tensor) -> float:
        """One update of the critics (SB3's clipped double-Q soft Bellman target, n-step discounts where the
        buffer gives them). Returns the loss."""
        discounts = data.discounts if data.discounts is not None else self.gamma
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.action_log_prob(data.next_observations)
            next_qs = torch.cat(self.critic_target(data.next_observations, next_actions), dim=1)
            next_q = torch.min(next_qs, dim=1, keepdim=True)[0] - ent_coef * next_log_prob.reshape(-1, 1)
            target_q = data.rewards + (1 - data.dones) * discounts * next_q
        q_data = self.critic(data.observations, data.actions)
        critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in q_data)
        self.critic.optimizer.zero_grad()
        critic_loss.backward()
        self.critic.optimizer.step()
        return critic_loss.item()

    def _actor_step(self, obs: torch.Tensor, actions_pi: torch.Tensor, log_prob: torch.Tensor,
                    ent_coef: torch.Tensor, logs: dict[str, list[float]]) -> None:
        """One actor update: the SAC objective, |Q|-normalized when there is a prior, plus the prior's pull."""
        q_values = torch.cat(self.critic(obs, actions_pi), dim=1)
        q_pi = torch.min(q_values, dim=1, keepdim=True)[0]
        actor_loss = (ent_coef * log_prob - q_pi).mean()
        if self.prior is not None:
            actor_loss = actor_loss / max(q_pi.abs().mean().item(), 1e-3)
            with torch.no_grad():
                target_actions = self.prior(obs)
            bc_mse = F.mse_loss(self.actor(obs, deterministic=True), target_actions)
            bc_coef = self.current_bc_coef()
            actor_loss = actor_loss + bc_coef * bc_mse
            logs["bc_mse"].append(bc_mse.item())
            logs["bc_coef"].append(bc_coef)
            logs["q_std"].append(q_values.detach().std(dim=1).mean().item())
        self.actor.optimizer.zero_grad()
        actor_loss.backward()
        self.actor.optimizer.step()
        logs["actor_loss"].append(actor_loss.item())
        logs["q_pi"].append(q_pi.mean().item())

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        logs: dict[str, list[float]] = {k: [] for k in ("ent_coef", "ent_coef_loss", "actor_loss", "critic_loss",
                                                         "q_pi", "bc_mse", "bc_coef", "q_std")}
        for step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            actions_pi, log_prob = self.actor.action_log_prob(data.observations)
            log_prob = log_prob.reshape(-1, 1)

            # entropy coefficient (SB3's)
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = torch.exp(self.log_ent_coef.detach())
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()
                logs["ent_coef_loss"].append(ent_coef_loss.item())
            else:
                ent_coef = self.ent_coef_tensor
            logs["ent_coef"].append(ent_coef.item())

            logs["critic_loss"].append(self._critic_step(data, ent_coef))
            self._actor_step(data.observations, actions_pi, log_prob, ent_coef, logs)
            if step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for k, v in logs.items():
            if v:
                self.logger.record(f"train/{k}", float(np.mean(v)))
