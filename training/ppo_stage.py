"""The PPO stage: BC-initialized (or scratch, or resumed) PPO with the hand-off schedule, trained to the
budget with periodic evaluation and confirmed selection, checkpoints, videos and a final evaluation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from pidog_env.env import has_display
from training import demos as demo_io
from training import stopping
from training.callbacks import (CheckpointCallback, EvalCallback, MetricsCallback, StopOnSignal,
                                VisualizationCallback, pooled_fall_rate)
from training.common import PipelineError, make_vec_env
from training.config import PipelineConfig
from training.evaluation import FINAL_EVAL_SEED_BASE, EvalPool, evaluate_policy
from training.experiment import Experiment, latest_checkpoint
from training.handoff_ppo import HandoffPPO, RewardNormalizer, reset_log_std
from training.policies import policy_class, policy_kwargs, policy_meta
from training.report import figures, log, selected_summary
from training.visualization import LiveViewer


def stage_ppo(cfg: PipelineConfig, exp: Experiment, bc_state: dict[str, torch.Tensor] | None,
              demo: demo_io.Demonstrations | None, pool: EvalPool | None = None) -> dict[str, Any]:
    resume_from = resume_point(cfg, exp)
    start = resume_from[1] if resume_from else 0
    with stopping.CURRENT.stage("PPO set-up", saved="no new PPO checkpoint (--resume starts PPO from where it was)"):
        venv = make_training_envs(cfg, exp, start, restore=resume_from is not None)
        model = init_ppo(cfg, venv, exp, bc_state, demo, resume_from)
    return learn(cfg, exp, model, venv, start, pool)


def resume_point(cfg: PipelineConfig, exp: Experiment) -> tuple[Path, int] | None:
    """The checkpoint --resume continues from (checked against the budget and the env), or None."""
    if not cfg.resume:
        return None
    found = latest_checkpoint(exp / Experiment.CHECKPOINTS)
    if found is None:
        log("no PPO checkpoint yet: PPO starts from the beginning")
        return None
    path, steps = found
    if steps >= cfg.rl.total_timesteps:
        raise PipelineError(f"--resume: checkpoint is at {steps} steps, already >= the budget "
                            f"rl.total_timesteps {cfg.rl.total_timesteps} (raise it with --total-rl-timesteps)")
    from training.policies import read_zip_meta
    saved_hash, now_hash = read_zip_meta(path).get("env_config_hash"), cfg.env.hash()
    if saved_hash != now_hash:
        raise PipelineError(f"--resume: checkpoint {path.name} was trained on env config {saved_hash}, but the "
                            f"saved config now gives {now_hash} (the env's settings changed); start a new experiment")
    return found


def make_training_envs(cfg: PipelineConfig, exp: Experiment, start_steps: int, restore: bool):
    venv = make_vec_env(cfg.env, cfg.rl.n_envs, cfg.seed + start_steps, subprocess=cfg.rl.vec_env != "dummy",
                        kind=cfg.rl.vec_env)
    if cfg.ppo.normalize_reward:
        venv = RewardNormalizer.wrap(venv, cfg.ppo.gamma, exp / Experiment.CHECKPOINTS if restore else None)
    return venv


def build_model(cfg: PipelineConfig, venv, from_bc: bool, bc_demos: tuple | None = None,
                tb_dir: Path | None = None) -> HandoffPPO:
    """The PPO every entry point trains: hand-off schedule on when it starts from BC."""
    p = cfg.ppo
    return HandoffPPO(
        policy_class(venv.observation_space, cfg.env), venv, learning_rate=p.learning_rate, n_steps=p.n_steps,
        batch_size=p.batch_size, n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda,
        clip_range=p.clip_range, ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
        policy_kwargs={**policy_kwargs(cfg.policy, venv.observation_space, cfg.env), "log_std_init": p.init_log_std},
        tensorboard_log=str(tb_dir) if tb_dir else None, seed=cfg.seed, device="cpu", verbose=0,
        value_warmup_steps=p.value_warmup_steps if from_bc else 0,
        actor_ramp_steps=p.actor_ramp_steps if from_bc else 0,
        bc_coef=p.bc_coef if from_bc else 0.0, bc_decay_steps=p.bc_decay_steps, bc_demos=bc_demos)


def init_ppo(cfg: PipelineConfig, venv, exp: Experiment, bc_state: dict[str, torch.Tensor] | None,
             demo: demo_io.Demonstrations | None, resume_from: tuple[Path, int] | None) -> HandoffPPO:
    """A fresh PPO, then either the checkpoint's weights (--resume) or the BC weights (strict load)."""
    from_bc = not (cfg.skip_bc and cfg.pretrained_model is None)
    demos_arrays = (demo.obs, demo.acts) if demo is not None and cfg.ppo.bc_coef > 0 else None
    model = build_model(cfg, venv, from_bc=from_bc, bc_demos=demos_arrays, tb_dir=exp / Experiment.TENSORBOARD)
    if resume_from is not None:
        path, steps = resume_from
        model.set_parameters(str(path), exact_match=True, device="cpu")
        model.num_timesteps = model._num_timesteps_at_start = steps
        log(f"resuming from {path.name} at {steps} steps")
    elif bc_state is not None:
        model.policy.load_state_dict(bc_state, strict=True)
        reset_log_std(model, cfg.ppo.init_log_std)
        log(f"PPO initialized from BC (strict state-dict load), log_std reset to {cfg.ppo.init_log_std}")
    return model


def learn(cfg: PipelineConfig, exp: Experiment, model: HandoffPPO, venv, start: int,
          pool: EvalPool | None = None) -> dict[str, Any]:
    """Train to the budget with evaluation, checkpoints and videos; a stop signal saves a checkpoint."""
    r, stops = cfg.rl, stopping.CURRENT
    meta = policy_meta(model.policy, cfg.policy, cfg.env, stage="ppo", algo="PPO")
    def earlier(name: str) -> list[dict]:     # what the stopped run had recorded up to its checkpoint
        return [h for h in exp.read_json(name, []) if h["timesteps"] <= start] if cfg.resume else []

    evaluator = EvalCallback.for_config(cfg, exp, meta, earlier(Experiment.EVALUATIONS), pool=pool)
    checkpoints = CheckpointCallback(r.checkpoint_freq, exp, meta)
    metrics = MetricsCallback(exp, earlier(Experiment.TRAIN_EPISODES))
    viz = VisualizationCallback(r.visualize_freq, exp, cfg.env, lambda: evaluator.history, lambda: metrics.history,
                                seed=cfg.seed)
    live = LiveViewer(exp.root) if (cfg.live if cfg.live is not None else has_display()) else None
    log(f"PPO: {r.total_timesteps - start:,} steps to the budget of {r.total_timesteps:,} over {r.n_envs} envs "
        f"({r.vec_env}) (TensorBoard: tensorboard --logdir {exp / Experiment.TENSORBOARD})")
    t0 = time.perf_counter()
    with stops.stage("PPO", polled=True):
        try:
            model.learn(total_timesteps=r.total_timesteps - start, progress_bar=True, reset_num_timesteps=False,
                        callback=[metrics, evaluator, checkpoints, StopOnSignal(stops), viz], tb_log_name="PPO")
        finally:
            seconds = time.perf_counter() - t0
            if live is not None:
                live.close()
            path = checkpoints.save()           # also at the end: --resume then knows the budget is spent
            if model.num_timesteps < r.total_timesteps:
                log(f"stopped at {model.num_timesteps:,} steps; checkpoint {path}")
            venv.close()
        if stops.received is not None:
            raise stopping.Interrupted(stops.received, "PPO", f"checkpoint {path} at {model.num_timesteps:,} steps")
    final = exp.save_model(model, exp / Experiment.FINAL_MODEL, meta)
    t_final = time.perf_counter()
    with stops.stage("the final evaluation", saved=f"{final} is saved",
                     continue_with=f"pidog evaluate --model {final}"):
        final_eval = evaluate_policy(model.policy, cfg.env, r.final_eval_episodes, FINAL_EVAL_SEED_BASE,
                                     randomize=True, pool=pool)
        final_eval.pop("per_episode")
        selected = selected_summary(cfg, exp, evaluator.selected, pool, (int(model.num_timesteps), final_eval))
    timings = stage_timings(seconds, evaluator, checkpoints, viz, time.perf_counter() - t_final)
    steps_per_s = (model.num_timesteps - start) / max(seconds, 1e-9)
    learning_steps_per_s = (model.num_timesteps - start) / max(timings["learning"], 1e-9)
    log(f"PPO done: {model.num_timesteps} steps at {steps_per_s:.0f} steps/s ({learning_steps_per_s:.0f} without "
        f"evaluations, checkpoints and clips) -> {final}; final policy: {figures(final_eval)}")
    log("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    first = evaluator.history[0] if evaluator.history else None
    return {"timesteps": int(model.num_timesteps), "steps_per_s": steps_per_s, "seconds": seconds,
            "learning_steps_per_s": learning_steps_per_s, "timings": timings,
            "confirmation_episodes": evaluator.confirmation_episodes,
            "episodes_reused": pool.reused if pool is not None else 0,     # already run, e.g. the BC policy's
            "first_eval": first, "final_eval": final_eval,
            "train_fall_rate_first_50k": pooled_fall_rate(metrics.history, 50_000),
            "last": {"model": str(final), "final_eval": final_eval},
            "selected": selected, "visualization_seconds": viz.seconds}


def stage_timings(seconds: float, evaluator: EvalCallback, checkpoints: CheckpointCallback,
                  viz: VisualizationCallback, final_s: float) -> dict[str, float]:
    """Where the PPO stage's wall time went: learning (rollouts and updates) is what the others leave."""
    out = {"evaluations": evaluator.seconds["evaluations"], "confirmations": evaluator.seconds["confirmations"],
           "clips": sum(viz.seconds), "checkpoints": checkpoints.seconds}
    return {"learning": max(0.0, seconds - sum(out.values())), **out, "final_figures": final_s}
