"""SAC fine-tuning from a BC policy: the actor loss with a decaying pull towards the BC policy, and
critics with LayerNorm.

Without help, SAC from a BC actor loses BC's gait within a few thousand steps of the actor's release:
the actor climbs the gradient of a critic that has seen ~10k on-policy transitions and over-estimates
actions it has never tried (measured in the README's off-policy table). Two standard remedies, both
optional (`off_policy.*`):

* **Prior term (kickstarting / TD3+BC).** The actor loss is

      (ent_coef * log pi(a|s) - min Q(s, a)) / mean|Q|  +  bc_coef(t) * |mu(s) - a_BC(s)|^2

  on every batch state s (demonstrations and online data): the SAC objective scaled to order 1 by the
  batch's mean |Q| (TD3+BC's normalization, so `bc_coef` means the same whatever the reward scale), plus
  the squared distance of the actor's mean action from the BC policy's action. `bc_coef` falls linearly
  to `bc_coef_final` (0 by default) over `bc_decay_steps` env steps from the actor's release, so the
  teacher guides the start and lets go later (as `ppo.bc_coef` does in the PPO hand-off). Or, with
  `bc_target_mse`, the weight is a Lagrange multiplier tuned to hold that squared distance (a
  constraint instead of a schedule), never below `bc_coef_final`; with `bc_target_ramp_steps` the
  allowed distance grows linearly from 0 at the release to `bc_target_mse` over that many env steps (a
  trust region that widens).
  With `q_scale_at_release` the mean |Q| is averaged over the warm-up's batches and held from the
  release: the batch's falls 2-4x once the tuned entropy coefficient rises, which loosens the prior as
  much as a 2-4x smaller `bc_coef` would.
  With `bc_by_disagreement` (beta in 0-1) the pull is shared out over the batch's states by the
  critics' disagreement: state i's weight is (1 - beta) + beta * sigma_i / mean(sigma), sigma_i the
  standard deviation over the Q networks of Q(s_i, a_pi), so the mean weight stays 1 (the schedule or
  constraint keeps its meaning) while the actor is held nearer BC where the critics do not agree on
  the value of its action (they have not seen it) and let go where they do.
* **Acting by Q (IBRL)** (`act_by_q`). After the release each executed action is the actor's sample or
  the BC policy's action, whichever the critics (minimum over all) value higher, so the data comes from
  the better of the two where the critics can tell; the actor, trained as above, is what is exported.
* **REDQ's split of the ensemble** (`actor_q`, `target_q_subset`). With `n_critics` Q networks the actor
  climbs their minimum (SB3's) or their mean: the minimum's action gradient is the gradient of whichever
  network is lowest in each state, a noisier estimate than the average of all of them. The critics'
  target takes the minimum over all target networks or over a random `target_q_subset` of them drawn
  each update (REDQ's 2: less pessimistic as the ensemble grows).
* **Two timescales** (`actor_learning_rate`). SB3 steps the actor and the critics at one learning rate;
  a slower actor gives the critics time to see what its new actions cost (falls included) before it
  moves further in the direction their early estimate pointed.
* **Conservative critics** (`cql_alpha`, CQL with the actor as the proposal distribution). Each Q
  network's loss adds cql_alpha * (Q(s, a_pi) - Q(s, a)) over the batch, a_pi a sample of the current
  actor and a the buffer's action: the critics value the actor's untried actions below the ones the
  buffer holds (by about 2 * cql_alpha where the data does not say otherwise), so the actor follows its
  own data rather than the critics' extrapolation; as online data of the new actions arrives the gap
  closes there.
* **LayerNorm critics** (RLPD): a LayerNorm after every hidden layer of both Q networks bounds how far
  Q can extrapolate to actions outside the data.
* **Centred entropy term** (`center_entropy`). SAC's soft Bellman target adds -ent_coef * log pi(a'|s')
  per step. For the near-deterministic actor a BC warm start gives (std 0.08 in 8 dimensions: log pi
  about +9.5), that "bonus" is a cost of about ent_coef * 9.5 per step, as large as the walking reward
  once the auto-tuned coefficient has risen to ~0.15, so the soft return of staying up shrinks and a
  fall (which ends the stream of costs) looks cheap to the critic. Centring measures the term from
  the target: -ent_coef * (log pi(a'|s') + target_entropy), zero on average when the entropy is at its
  target, so it still rewards entropy above the target without paying or charging for survival. The
  actor's loss is unchanged (a constant offset has no gradient).

`SACWithPrior.train` is SB3's `SAC.train` with that actor loss; the critic and entropy updates are
SB3's, the critics' target centred only when asked.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import SAC
from stable_baselines3.common.utils import polyak_update

LOG_BC_COEF_MIN, LOG_BC_COEF_MAX = float(np.log(1e-2)), float(np.log(1e3))   # the tuned prior weight stays in 0.01-1000


def layer_norm_critics(policy) -> None:
    """Rebuild both Q networks of an SB3 SAC/TD3 policy (and their targets) with a LayerNorm after every
    hidden Linear layer; fresh weights, a fresh critic optimizer. Same architecture otherwise."""
    for critic in (policy.critic, policy.critic_target):
        for i, old in enumerate(critic.q_networks):
            layers: list[torch.nn.Module] = []
            linears = [m for m in old if isinstance(m, torch.nn.Linear)]
            act = next((type(m) for m in old if not isinstance(m, torch.nn.Linear)), torch.nn.ReLU)
            for lin in linears[:-1]:
                layers += [torch.nn.Linear(lin.in_features, lin.out_features), torch.nn.LayerNorm(lin.out_features),
                           act()]
            layers.append(torch.nn.Linear(linears[-1].in_features, linears[-1].out_features))
            new = torch.nn.Sequential(*layers)
            critic.add_module(f"qf{i}", new)
            critic.q_networks[i] = new
    policy.critic_target.load_state_dict(policy.critic.state_dict())
    lr = policy.critic.optimizer.param_groups[0]["lr"]
    policy.critic.optimizer = policy.optimizer_class(policy.critic.parameters(), lr=lr, **policy.optimizer_kwargs)


def has_layer_norm(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether saved SAC/TD3 weights come from LayerNorm critics (their q networks have 1-D weights)."""
    return any(k.startswith("critic.qf") and k.endswith(".weight") and v.dim() == 1 for k, v in state_dict.items())


def entropy_term(ent_coef: torch.Tensor, log_prob: torch.Tensor, target_entropy: float, centered: bool) -> torch.Tensor:
    """What the soft Bellman target subtracts per step: ent_coef * log pi, or, centred, ent_coef * (log pi +
    target_entropy), which is 0 when the policy's entropy (-log pi) equals its target."""
    return ent_coef * (log_prob + float(target_entropy) if centered else log_prob)


class SACWithPrior(SAC):
    """SAC whose actor is pulled towards `prior(obs) -> actions` with weight `bc_coef(env_steps)`."""

    def __init__(self, *args, prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 bc_coef: float = 0.0, bc_decay_steps: int = 1, release_step: int = 0, center_entropy: bool = False,
                 bc_target_mse: float | None = None, bc_coef_final: float = 0.0, actor_delay: int = 1,
                 q_scale_at_release: bool = False, act_by_q: bool = False, bc_target_ramp_steps: int = 0,
                 bc_by_disagreement: float = 0.0, actor_q: str = "min", target_q_subset: int = 0,
                 actor_learning_rate: float | None = None, cql_alpha: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cql_alpha = cql_alpha                        # the conservative penalty's weight (0: off)
        # two timescales: the actor's own Adam step size (None: the critics' learning rate, SB3's shared one)
        self.actor_learning_rate = actor_learning_rate
        # REDQ's split: the actor climbs the mean (or the minimum) of the Q networks; the critics' target takes the
        # minimum over a random subset of `target_q_subset` target networks each update (0: over all of them)
        self.actor_q, self.target_q_subset = actor_q, target_q_subset
        # acting by Q: which of the executed actions after the release were the BC policy's (1) or the actor's (0)
        self.act_by_q = act_by_q and prior is not None
        self.bc_acted: deque[int] = deque(maxlen=1_000)
        self.bc_acted_total = [0, 0]                                   # BC's choices, all choices
        self.actor_delay = max(1, actor_delay)
        # the actor loss's |Q| normalizer: each batch's, or (q_scale_at_release) an average over the warm-up's
        # batches that stops moving at the release
        self.q_scale_at_release, self.q_scale = q_scale_at_release, None
        self.prior, self.bc_coef0, self.center_entropy = prior, bc_coef, center_entropy
        self.bc_coef_final = min(bc_coef_final, bc_coef)
        self.bc_decay_steps, self.release_step = max(1, bc_decay_steps), release_step
        self.bc_target_mse = bc_target_mse if prior is not None and bc_coef > 0 else None
        self.bc_target_ramp_steps = bc_target_ramp_steps
        self.bc_by_disagreement = bc_by_disagreement
        self.log_bc_coef: torch.Tensor | None = None
        if self.bc_target_mse is not None:
            # a Lagrange multiplier, tuned like SAC's entropy coefficient (same optimizer and learning-rate schedule)
            self.log_bc_coef = torch.tensor(float(np.log(bc_coef)), requires_grad=True)
            self.bc_coef_optimizer = torch.optim.Adam([self.log_bc_coef], lr=self.lr_schedule(1))

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "prior", "log_bc_coef", "bc_coef_optimizer", "bc_acted"]

    def min_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The critics' minimum over all Q networks, (batch, 1)."""
        return torch.min(torch.cat(self.critic(obs, actions), dim=1), dim=1, keepdim=True)[0]

    def target_subset(self, next_qs: torch.Tensor) -> torch.Tensor:
        """The target networks' values (batch, n) whose minimum makes the critics' target: all n, or REDQ's
        random `target_q_subset` of them (the same subset for the whole batch, drawn anew each update)."""
        n, m = next_qs.shape[1], self.target_q_subset
        if m <= 0 or m >= n:
            return next_qs
        return next_qs[:, torch.randperm(n)[:m]]

    def actor_value(self, q_values: torch.Tensor) -> torch.Tensor:
        """The value the actor climbs from the Q networks' values (batch, n): their minimum (SB3's), or with
        `actor_q` "mean" their average (REDQ: a smoother gradient than the minimum's, which follows whichever
        network is lowest in each state)."""
        if self.actor_q == "mean":
            return q_values.mean(dim=1, keepdim=True)
        return torch.min(q_values, dim=1, keepdim=True)[0]

    def prior_state_weights(self, sigma: torch.Tensor) -> torch.Tensor:
        """Per-state weights (batch,) of the prior's pull from `sigma` (batch,), the Q networks' standard
        deviation on each state's actor action: (1 - beta) + beta * sigma / mean(sigma), all 1 when
        `bc_by_disagreement` (beta) is 0. The mean weight is 1 whatever beta."""
        beta = self.bc_by_disagreement
        return (1 - beta) + beta * sigma / sigma.mean().clamp_min(1e-8)

    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """SB3's exploration action; with `act_by_q`, once the actor is released, replaced by the BC policy's
        action in every env where the critics value that higher than the actor's sample."""
        action, buffer_action = super()._sample_action(learning_starts, action_noise, n_envs)
        if not self.act_by_q or self.num_timesteps < max(learning_starts, self.release_step):
            return action, buffer_action
        with torch.no_grad():
            obs = torch.as_tensor(self._last_obs, dtype=torch.float32)
            ours = torch.as_tensor(buffer_action, dtype=torch.float32)
            bc = self.prior(obs)
            use_bc = (self.min_q(obs, bc) > self.min_q(obs, ours)).squeeze(1).numpy()
        buffer_action = np.where(use_bc[:, None], bc.numpy(), buffer_action).astype(buffer_action.dtype)
        self.bc_acted.extend(int(u) for u in use_bc)
        self.bc_acted_total[0] += int(use_bc.sum())
        self.bc_acted_total[1] += len(use_bc)
        return self.policy.unscale_action(buffer_action), buffer_action

    def bc_action_share(self) -> float | None:
        """The share of executed actions that were the BC policy's since the release (None before, or off)."""
        return self.bc_acted_total[0] / self.bc_acted_total[1] if self.bc_acted_total[1] else None

    def _steps_since_release(self) -> int:
        return max(0, self.num_timesteps - self.release_step)

    def current_bc_coef(self) -> float:
        if self.prior is None:
            return 0.0
        if self.log_bc_coef is not None:
            return float(torch.exp(self.log_bc_coef.detach()))
        done = self._steps_since_release()
        return self.bc_coef_final + (self.bc_coef0 - self.bc_coef_final) * max(0.0, 1.0 - done / self.bc_decay_steps)

    def current_bc_target(self) -> float | None:
        """The squared distance from BC the tuned weight holds now: `bc_target_mse`, or while it ramps up a
        linear share of it (0 at the release)."""
        if self.bc_target_mse is None:
            return None
        if self.bc_target_ramp_steps <= 0:
            return self.bc_target_mse
        return self.bc_target_mse * min(1.0, self._steps_since_release() / self.bc_target_ramp_steps)

    def _tune_bc_coef(self, bc_mse: torch.Tensor) -> None:
        """Dual ascent on the constraint E|mu(s) - a_BC(s)|^2 <= bc_target_mse: the weight grows while the
        actor is farther from the BC policy than the target and shrinks while it is nearer, not below
        `bc_coef_final` (a floor: where the critic's pull is weak the prior still holds). Only once the
        actor moves (during the critic warm-up the distance says nothing about the actor's choices)."""
        if self.log_bc_coef is None or self.num_timesteps < self.release_step:
            return
        loss = -self.log_bc_coef * (bc_mse.detach() - self.current_bc_target())
        self.bc_coef_optimizer.zero_grad()
        loss.backward()
        self.bc_coef_optimizer.step()
        with torch.no_grad():
            floor = np.log(self.bc_coef_final) if self.bc_coef_final > 0 else LOG_BC_COEF_MIN
            self.log_bc_coef.clamp_(max(LOG_BC_COEF_MIN, floor), LOG_BC_COEF_MAX)

    def _critic_step(self, data, ent_coef: torch.Tensor, actions_pi: torch.Tensor | None = None,
                     logs: dict[str, list[float]] | None = None) -> float:
        """One update of the critics (SB3's): the clipped double-Q soft Bellman target, plus with `cql_alpha`
        the conservative penalty on `actions_pi` (the actor's samples at the batch's states; drawn here when
        None), its mean gap Q(s, a_pi) - Q(s, a) appended to `logs["cql_gap"]` when given. Returns the loss."""
        discounts = data.discounts if data.discounts is not None else self.gamma
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.action_log_prob(data.next_observations)
            next_qs = torch.cat(self.critic_target(data.next_observations, next_actions), dim=1)
            next_q = torch.min(self.target_subset(next_qs), dim=1, keepdim=True)[0] - entropy_term(
                ent_coef, next_log_prob.reshape(-1, 1), self.target_entropy, self.center_entropy)
            target_q = data.rewards + (1 - data.dones) * discounts * next_q
        q_data = self.critic(data.observations, data.actions)
        critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in q_data)
        if self.cql_alpha > 0:
            if actions_pi is None:
                with torch.no_grad():
                    actions_pi, _ = self.actor.action_log_prob(data.observations)
            q_pi = self.critic(data.observations, actions_pi.detach())
            gaps = [(qp - qd).mean() for qp, qd in zip(q_pi, q_data)]
            critic_loss = critic_loss + self.cql_alpha * sum(gaps)
            if logs is not None:
                logs["cql_gap"].append(sum(gaps).item() / len(gaps))
        self.critic.optimizer.zero_grad()
        critic_loss.backward()
        self.critic.optimizer.step()
        return critic_loss.item()

    def _update_targets(self) -> None:
        polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
        polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

    def pretrain_critics(self, updates: int, batch_size: int | None = None) -> float | None:
        """Offline critic warm-up before the first env step: `updates` critic steps on what the replay buffer
        holds then (the demonstrations alone), bootstrapping on the fixed warm-started actor's actions and the
        starting entropy coefficient. No env steps are spent. Returns the last loss (None for 0 updates)."""
        ent_coef = torch.exp(self.log_ent_coef.detach()) if self.log_ent_coef is not None else self.ent_coef_tensor
        loss = None
        self.policy.set_training_mode(True)
        for step in range(updates):
            loss = self._critic_step(self.replay_buffer.sample(batch_size or self.batch_size,
                                                               env=self._vec_normalize_env), ent_coef)
            if step % self.target_update_interval == 0:
                self._update_targets()
        return loss

    def _q_scale(self, batch_mean_abs_q: float) -> float:
        """The |Q| the actor's SAC loss is divided by: the batch's, or with `q_scale_at_release` an exponential
        average (time constant 1,000 updates) of the batches' until the release, then held."""
        if not self.q_scale_at_release:
            return max(batch_mean_abs_q, 1e-3)
        if self.q_scale is None:
            self.q_scale = batch_mean_abs_q
        elif self.num_timesteps < self.release_step:
            self.q_scale += 1e-3 * (batch_mean_abs_q - self.q_scale)
        return max(self.q_scale, 1e-3)

    def _actor_step(self, obs: torch.Tensor, actions_pi: torch.Tensor, log_prob: torch.Tensor,
                    ent_coef: torch.Tensor, logs: dict[str, list[float]]) -> None:
        """One actor update: the SAC objective, |Q|-normalized when there is a prior, plus the prior's pull."""
        q_values = torch.cat(self.critic(obs, actions_pi), dim=1)
        q_pi = self.actor_value(q_values)
        actor_loss = (ent_coef * log_prob - q_pi).mean()
        if self.prior is not None:
            actor_loss = actor_loss / self._q_scale(q_pi.abs().mean().item())
            with torch.no_grad():
                target_actions = self.prior(obs)
            mean_actions = self.actor(obs, deterministic=True)
            bc_mse = F.mse_loss(mean_actions, target_actions)
            bc_coef = self.current_bc_coef()
            sigma = q_values.detach().std(dim=1)                     # the critics' disagreement per state
            if self.bc_by_disagreement > 0:
                per_state = ((mean_actions - target_actions) ** 2).mean(dim=1)
                actor_loss = actor_loss + bc_coef * (self.prior_state_weights(sigma) * per_state).mean()
            else:
                actor_loss = actor_loss + bc_coef * bc_mse
            self._tune_bc_coef(bc_mse)
            logs["bc_mse"].append(bc_mse.item())
            logs["bc_coef"].append(bc_coef)
            logs["q_std"].append(sigma.mean().item())
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
        if self.log_bc_coef is not None:
            optimizers += [self.bc_coef_optimizer]
        self._update_learning_rate(optimizers)
        if self.actor_learning_rate is not None:
            for group in self.actor.optimizer.param_groups:
                group["lr"] = self.actor_learning_rate
        logs: dict[str, list[float]] = {k: [] for k in ("ent_coef", "ent_coef_loss", "actor_loss", "critic_loss",
                                                         "q_pi", "bc_mse", "bc_coef", "q_std", "cql_gap")}
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

            logs["critic_loss"].append(self._critic_step(data, ent_coef, actions_pi, logs))
            if (self._n_updates + step) % self.actor_delay == 0:
                self._actor_step(data.observations, actions_pi, log_prob, ent_coef, logs)
            if step % self.target_update_interval == 0:
                self._update_targets()

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for k, v in logs.items():
            if v:
                self.logger.record(f"train/{k}", float(np.mean(v)))
        if self.bc_acted:
            self.logger.record("rollout/bc_action_share", float(np.mean(self.bc_acted)))   # the last 1,000
