"""SAC or TD3 (`rl.algo`), from scratch or warm-started from a BC policy.

Evaluations every `rl.eval_freq` steps and the shipped `best_model.zip` follow the PPO stage's rules
(`training.selection`): the fastest evaluated model with at most `rl.select_max_fall_rate` falls.

From BC, the actor is first regressed onto the BC policy's actions on the demonstrations
(`off_policy.warm_start_updates` Adam steps), then stays fixed for `off_policy.critic_warmup_steps`
env steps while the critic learns, then both learn off-policy. SAC from BC also keeps its entropy at the
warm-started actor's (`actor_entropy`), and its actor loss keeps a decaying pull towards the BC policy
(`training.sac_prior`). The critics have LayerNorm after every hidden layer (RLPD).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch

from training import stopping
from training.callbacks import EvalCallback, StopOnSignal
from training.common import PipelineError, make_vec_env
from training.config import PipelineConfig
from training.demos import Demonstrations
from training.evaluation import FINAL_EVAL_SEED_BASE, evaluate_policy
from training.experiment import Experiment
from training.interventions import TAKE_OVER_RATE, TAKE_OVER_TILT_DEG
from training.policies import layer_norm_critics, policy_meta
from training.report import figures, log, selected_summary
from training.sac_prior import SACWithPrior


def stage_off_policy(cfg: PipelineConfig, exp: Experiment, bc_policy, demo: Demonstrations | None,
                     pool: Any = None) -> dict[str, Any]:
    """SAC or TD3 to the budget: the model, interventions and demonstration mixing, the actor warm start,
    periodic evaluation and selection, then the final figures."""
    o, algo = cfg.off_policy, cfg.rl.algo
    if bc_policy is not None and demo is None:
        raise PipelineError("the actor warm start needs the demonstrations saved beside the BC policy")
    if o.demo_ratio > 0 and demo is None:
        raise PipelineError("off_policy.demo_ratio needs demonstrations (from the BC stage, beside "
                            "--pretrained-model, or --demos)")
    penalty = intervention_penalty(cfg)
    venv = make_vec_env(cfg.env, 1, cfg.seed, subprocess=False, intervention=o.intervention,
                        intervention_penalty=penalty)
    model = build_model(cfg, exp, venv, bc_policy)
    callbacks = []
    interventions = None
    if o.intervention != "none":
        interventions = InterventionCallback(exp, window=max(100, min(1_000, cfg.rl.total_timesteps // 20)))
        callbacks.append(interventions)
        log(f"{algo.upper()}: expert interventions on (the trot takes over past {TAKE_OVER_TILT_DEG:.0f} deg of tilt "
            f"or {TAKE_OVER_RATE:.0f} rad/s, costing the learner {penalty:g}; its steps join the demonstrations)"
            if o.intervention == "expert" else
            f"{algo.upper()}: keyboard interventions on: Enter in the viewer hands control to the trot and back")
    if o.demo_ratio > 0:
        model.replay_buffer.set_demos(demo.transitions())
        log(f"{algo.upper()}: {o.demo_ratio:.0%} of every batch from {len(demo):,} demonstration transitions"
            + (f", decaying to 0 over {o.demo_ratio_decay_steps:,} steps" if o.demo_ratio_decay_steps else ""))
    if bc_policy is not None:
        loss = warm_start_actor(model, algo, demo.obs, bc_policy.predict(demo.obs, deterministic=True)[0],
                                o.warm_start_updates, o.init_log_std)
        ev = evaluate_policy(model.policy, cfg.env, 3, randomize=True, pool=pool)
        log(f"{algo.upper()} actor warm-started from the BC policy (action MSE {loss:.2e}): {figures(ev)}")
        if algo == "sac":
            model.target_entropy = actor_entropy(model.actor, demo.obs)
            log(f"SAC: target entropy {model.target_entropy:.2f} (the warm-started actor's; SB3's default "
                f"{-venv.action_space.shape[0]})")
        callbacks.append(FreezeActor(o.critic_warmup_steps))
        if algo == "sac" and o.bc_coef > 0:
            log(f"SAC: the actor's loss keeps a pull towards the BC policy (weight {o.bc_coef:g} beside the |Q|-scaled "
                f"SAC loss, falling to 0 over {o.bc_decay_steps:,} steps after the critic warm-up)")
    r = cfg.rl
    meta = policy_meta(model.policy, cfg.policy, cfg.env, stage="rl", algo=algo.upper())
    evaluator = EvalCallback.for_config(cfg, exp, meta, pool=pool)
    callbacks.append(evaluator)
    dashboard = Dashboard(exp, r.eval_freq, lambda: evaluator.history,
                          lambda: interventions.log.history if interventions is not None else None, algo.upper())
    callbacks.append(dashboard)
    t0 = time.perf_counter()
    stops = stopping.CURRENT
    with stops.stage(f"{algo.upper()} training", polled=True):
        try:
            model.learn(cfg.rl.total_timesteps, progress_bar=True, callback=[*callbacks, StopOnSignal(stops)])
        finally:
            venv.close()
        if stops.received is not None:
            raise stopping.Interrupted(stops.received, f"{algo.upper()} training",
                                       f"nothing is saved ({algo.upper()} runs keep no checkpoints yet)",
                                       "the same command with a new --experiment-name")
    seconds = time.perf_counter() - t0
    path = exp.save_model(model, exp / Experiment.FINAL_MODEL, meta)
    dashboard.save()
    t_final = time.perf_counter()
    ev = evaluate_policy(model.policy, cfg.env, cfg.rl.final_eval_episodes, FINAL_EVAL_SEED_BASE, randomize=True,
                         pool=pool)
    ev.pop("per_episode")
    selected = selected_summary(cfg, exp, evaluator.selected, pool, (int(model.num_timesteps), ev))
    timings = {"learning": max(0.0, seconds - sum(evaluator.seconds.values())), **evaluator.seconds,
               "final_figures": time.perf_counter() - t_final}
    log(f"{algo.upper()}: {figures(ev)} -> {path}")
    drawn = getattr(model.replay_buffer, "drawn", None)
    result = {"algo": algo, "timesteps": int(model.num_timesteps), "seconds": seconds, "timings": timings,
              "n_step": o.n_step, "demo_ratio": o.demo_ratio,
              "demo_rows_drawn": drawn,
              "ent_coef_final": entropy_coefficient(model),
              "final_eval": ev, "selected": selected}
    if interventions is not None:
        result.update(intervention_rate_first20=interventions.log.rate_between(0.0, 0.2),
                      intervention_rate_last20=interventions.log.rate_between(0.8, 1.0),
                      intervention_rows=getattr(model.replay_buffer, "intervention_rows", 0))
        log(f"{algo.upper()}: intervention rate {result['intervention_rate_first20']} in the first 20 % of training, "
            f"{result['intervention_rate_last20']} in the last 20 % (final figures above are without interventions)")
    return result


def build_model(cfg: PipelineConfig, exp: Experiment, venv, bc_policy):
    """The SB3 SAC / TD3 (SACWithPrior from a BC policy) with LayerNorm critics and, when demonstrations or
    takeovers join the batches, the mixing replay buffer."""
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    o, algo = cfg.off_policy, cfg.rl.algo
    mixed = o.demo_ratio > 0 or o.intervention != "none"      # demonstrations or takeovers in the batches
    common = dict(policy_kwargs={"net_arch": list(cfg.policy.net_arch)},
                  tensorboard_log=str(exp / Experiment.TENSORBOARD),
                  seed=cfg.seed, device="cpu", buffer_size=o.buffer_size, learning_rate=o.learning_rate,
                  learning_starts=o.learning_starts if bc_policy is None else min(o.learning_starts, 1_000),
                  gamma=o.gamma,
                  n_steps=1 if mixed else o.n_step)   # a mixing buffer computes them (SB3 only sets up its own)
    if mixed:
        from training.replay import DemoMixReplayBuffer
        common["replay_buffer_class"] = DemoMixReplayBuffer
        common["replay_buffer_kwargs"] = {"demo_ratio": o.demo_ratio, "decay_steps": o.demo_ratio_decay_steps,
                                          "n_steps": o.n_step, "gamma": o.gamma}
    if algo == "sac" and bc_policy is not None:
        # a near-deterministic BC actor: a small entropy bonus to start with, and a decaying pull towards it
        common["ent_coef"] = f"auto_{o.ent_coef_init}"
        model = SACWithPrior("MlpPolicy", venv, prior=bc_prior(bc_policy) if o.bc_coef > 0 else None,
                             bc_coef=o.bc_coef, bc_decay_steps=o.bc_decay_steps,
                             release_step=o.critic_warmup_steps, **common)
    elif algo == "sac":
        model = SAC("MlpPolicy", venv, **common)
    else:
        noise = NormalActionNoise(np.zeros(8), o.td3_action_noise * np.ones(8))
        model = TD3("MlpPolicy", venv, action_noise=noise, **common)
    layer_norm_critics(model.policy)
    return model


def entropy_coefficient(model) -> float | None:
    """SAC's entropy coefficient now (auto-tuned or fixed); None for TD3."""
    if getattr(model, "log_ent_coef", None) is not None:
        return round(float(torch.exp(model.log_ent_coef.detach())), 6)
    fixed = getattr(model, "ent_coef_tensor", None)
    return None if fixed is None else round(float(fixed), 6)


def intervention_penalty(cfg: PipelineConfig) -> float:
    """What a takeover costs the learner: `off_policy.intervention_penalty`, else the env's fall penalty."""
    p = cfg.off_policy.intervention_penalty
    return float(p) if p is not None else abs(float(cfg.env.reward.scales["fall"]))


def actor_entropy(actor, obs: np.ndarray, samples: int = 4_096) -> float:
    """The SAC actor's mean entropy estimate (-log pi of its own sampled actions, tanh included) on `obs`.

    From BC this becomes SAC's target entropy, so the entropy tuning holds the actor near the exploration
    it starts with (std exp(off_policy.init_log_std)). SB3's default, -dims, is far above a BC actor's
    (about -9.4 here): with any consistent gap Adam raises log(ent_coef) by ~lr every update, the
    coefficient grows 15x over the critic warm-up, the soft value's entropy term outweighs the reward
    (Q < 0 while the gait earns ~0.9 per step) and the released actor buys entropy with a noisier gait."""
    idx = np.random.default_rng(0).integers(0, len(obs), min(samples, len(obs)))
    with torch.no_grad():
        _, log_prob = actor.action_log_prob(torch.as_tensor(obs[idx], dtype=torch.float32))
    return float(-log_prob.mean())


def bc_prior(bc_policy):
    """obs tensor -> the BC policy's deterministic actions, clipped to the action box as `predict` does."""
    def actions(obs: torch.Tensor) -> torch.Tensor:
        return bc_policy._predict(obs, deterministic=True).clamp(-1.0, 1.0)
    return actions


def InterventionCallback(exp: Experiment, window: int = 1_000):  # noqa: N802 (a factory that reads like a class)
    """Logs the intervention rate per `window` env steps (1,000, or a 20th of a shorter run) to TensorBoard
    and `interventions.json`."""
    from stable_baselines3.common.callbacks import BaseCallback

    from training.interventions import InterventionLog

    class _Callback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.log = InterventionLog(window)

        def _on_step(self) -> bool:
            row = self.log.record(self.locals["infos"], self.num_timesteps)
            if row is not None:
                self.logger.record("rollout/intervention_rate", row["intervention_rate"])
                self.logger.record("rollout/takeovers", row["takeovers"])
                (exp / Experiment.INTERVENTIONS).write_text(json.dumps(self.log.history))
            return True

    return _Callback()


def Dashboard(exp: Experiment, every: int, evaluations, interventions, title: str):  # noqa: N802
    """plots/training_curves.png every `every` env steps (0: at the end only): evaluations, plus the
    intervention rate when the run has interventions."""
    from stable_baselines3.common.callbacks import BaseCallback

    from training.visualization import save_dashboard

    class _Callback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last = 0

        def save(self) -> None:
            save_dashboard(exp / Experiment.DASHBOARD, evaluations(),
                           title=f"{title} ({exp.root.name})", interventions=interventions())

        def _on_step(self) -> bool:
            if every and self.num_timesteps - self.last >= every:
                self.last = self.num_timesteps
                self.save()
            return True

    return _Callback()


def warm_start_actor(model, algo: str, obs: np.ndarray, acts: np.ndarray, updates: int,
                     log_std: float | None = None) -> float:
    """Regress the actor's deterministic action onto `acts`; returns the last batch's MSE. For SAC, the
    log-std head is then set to the constant `log_std` (before tanh; zero weights, so the trunk the mean
    needs is untouched): SB3's fresh actor samples with std ~1, which topples the BC gait."""
    actor = model.actor
    opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
    obs_t = torch.as_tensor(obs, dtype=torch.float32)
    acts_t = torch.as_tensor(acts, dtype=torch.float32)
    loss = torch.zeros(())
    for _ in range(updates):
        idx = torch.randint(0, len(obs_t), (512,))
        pred = actor(obs_t[idx], deterministic=True) if algo == "sac" else actor(obs_t[idx])
        loss = torch.nn.functional.mse_loss(pred, acts_t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    if algo == "sac" and log_std is not None:
        with torch.no_grad():
            actor.log_std.weight.zero_()
            actor.log_std.bias.fill_(log_std)
    if algo == "td3":
        model.actor_target.load_state_dict(model.actor.state_dict())
    return float(loss.item())


def FreezeActor(steps: int):  # noqa: N802 (a factory that reads like the class it returns)
    """Critic warm-up: the warm-started actor stays fixed until the critic has `steps` of data."""
    from stable_baselines3.common.callbacks import BaseCallback

    class _FreezeActor(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = False

        def _set(self, trainable: bool) -> None:
            for p in self.model.actor.parameters():
                p.requires_grad_(trainable)
            self.frozen = not trainable

        def _on_training_start(self) -> None:
            if steps > 0:
                self._set(False)

        def _on_step(self) -> bool:
            if self.frozen and self.num_timesteps >= steps:
                self._set(True)
            return True

    return _FreezeActor()
