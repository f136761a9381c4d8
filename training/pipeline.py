"""The stages of a run, in order: experiment folder -> demonstrations -> behavior cloning -> RL.

`pidog train|imitate|rl` (and the documented scripts) build a `PipelineConfig` and call `run(cfg)`.
Every stage writes into the experiment folder (`training.experiment.Experiment` names each file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from pidog_env.env import action_space, has_display, observation_space
from pidog_env.evaluation import tracking_text
from training import demos as demo_io
from training import stopping
from training.bc import split_episodes, train_bc
from training.callbacks import (CheckpointCallback, EvalCallback, MetricsCallback, StopOnSignal,
                                VisualizationCallback, pooled_fall_rate)
from training.common import PipelineError, check_spaces, make_vec_env, versions
from training.config import PipelineConfig
from training.evaluate import FINAL_EVAL_SEED_BASE, evaluate_policy
from training.experiment import Experiment, checkpoint_steps, latest_checkpoint
from training.handoff_ppo import HandoffPPO, RewardNormalizer, reset_log_std
from training.policies import (load_policy, load_policy_file, policy_class, policy_kwargs, policy_meta,
                               rebuild_policy, save_policy)
from training.selection import selection_figures
from training.visualization import LiveViewer


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def figures(ev: dict[str, Any]) -> str:
    return (f"return {ev['mean_return']:.1f}, speed {ev['mean_forward_speed']:.3f} m/s, "
            f"falls {ev['fall_rate']:.0%}{tracking_text(ev)}")



# ---------------------------------------------------------------- the whole run
def run(cfg: PipelineConfig, assignments: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Run every stage `cfg` asks for. On --resume, `assignments` are the settings the user typed.

    A stop signal ends the current stage as `training.stopping` describes; `Interrupted` then carries
    what was saved and the command that continues the run."""
    torch.set_num_threads(1)            # the env workers need the other cores
    stops = stopping.CURRENT.install()
    exp = Experiment(cfg.experiment_dir)
    try:
        return _run(cfg, exp, assignments or [])
    except stopping.Interrupted as exc:
        exc.continue_with = exc.continue_with or \
            f"the same command with --resume (--experiment-name {exp.root.name} --output-dir {exp.root.parent})"
        raise
    finally:
        stops.uninstall()


def _run(cfg: PipelineConfig, exp: Experiment, assignments: list[tuple[str, Any]]) -> dict[str, Any]:
    stage = stopping.CURRENT.stage
    if cfg.resume:
        at = checkpoint_steps(exp)
        cfg = exp.resume_config(assignments, at)
        log(f"resuming {exp.root}: budget rl.total_timesteps = {cfg.rl.total_timesteps:,} (checkpoint at {at:,} steps)")
    validate_inputs(cfg)
    if not cfg.resume:
        exp.create(cfg)
    summary: dict[str, Any] = exp.read_json(Experiment.SUMMARY, {})
    summary.update({"experiment": str(exp.root), "versions": versions()})
    spaces = observation_space(cfg.env), action_space(cfg.env)
    bc_policy, demo = None, None
    # On --resume, a stage whose artifact exists is not run again (a stop during BC resumes at BC).
    if cfg.pretrained_model:
        bc_policy, demo = load_pretrained(cfg)
        summary["pretrained_model"] = str(cfg.pretrained_model)
    elif not cfg.skip_bc:
        if cfg.resume and (exp / Experiment.DEMOS).is_file():
            demo = demo_io.load(exp / Experiment.DEMOS, *spaces)
        else:
            with stage("recording demonstrations", saved="nothing is saved before the recording ends"):
                demo = stage_demos(cfg, exp)
            summary["demonstrations"] = demo.summary()
            exp.write_json(Experiment.SUMMARY, summary)
        if cfg.resume and (exp / Experiment.BC_POLICY).is_file():
            bc_policy, _ = load_policy(exp / Experiment.BC_POLICY)
        else:
            with stage("behavior cloning", saved=f"{Experiment.DEMOS} is saved; --resume clones from it"):
                bc_policy, summary["bc"] = stage_bc(cfg, exp, demo)
        exp.write_json(Experiment.SUMMARY, summary)

    if cfg.rl.total_timesteps > 0:
        if cfg.rl.algo == "ppo":
            bc_state = bc_policy.state_dict() if bc_policy is not None else None
            summary["ppo"] = stage_ppo(cfg, exp, bc_state, demo)
        else:
            from training.off_policy import stage_off_policy
            summary["off_policy"] = stage_off_policy(cfg, exp, bc_policy, demo)
    exp.write_json(Experiment.SUMMARY, summary)
    log(f"summary -> {exp / Experiment.SUMMARY}")
    return summary


def validate_inputs(cfg: PipelineConfig) -> None:
    """Check the files a run needs before anything is written, so bad input leaves no half-made folder."""
    if cfg.rl.algo != "ppo" and cfg.off_policy.intervention == "keyboard" and not has_display():
        raise PipelineError("--intervention keyboard needs a display: it reads keys from MuJoCo's viewer window")
    if cfg.resume:
        if cfg.rl.algo != "ppo" and cfg.rl.total_timesteps > 0:
            raise PipelineError(f"--resume is available for PPO runs (this one uses {cfg.rl.algo})")
        return
    if cfg.pretrained_model:
        load_pretrained(cfg, with_demos=False)
    elif not cfg.skip_bc:
        if cfg.demo.path:
            demo_io.load(cfg.demo.path, observation_space(cfg.env), action_space(cfg.env), cfg.demo.allow_pickle)
        elif cfg.demo.source != "trot":
            demo_io.make_expert(cfg.demo.source, cfg.env, cfg.demo.allow_pickle)


# ---------------------------------------------------------------- demonstrations and imitation
def stage_demos(cfg: PipelineConfig, exp: Experiment) -> demo_io.Demonstrations:
    if cfg.demo.path:
        demo = demo_io.load(cfg.demo.path, observation_space(cfg.env), action_space(cfg.env), cfg.demo.allow_pickle)
        log(f"demonstrations from {cfg.demo.path}")
    else:
        log(f"recording {cfg.demo.n_episodes} demonstration episodes from '{cfg.demo.source}' "
            f"(DART noise {cfg.demo.noise}, {cfg.demo.n_envs} envs)")
        demo = demo_io.generate(cfg.demo, cfg.env, cfg.seed)
    demo_io.save(demo, exp / Experiment.DEMOS)
    s = demo.summary()
    log(f"demonstrations: {s['transitions']} steps, return {s['mean_return']:.1f}, "
        f"speed {s['mean_forward_speed']:.3f} m/s, falls {s['fall_rate']:.0%} -> {exp / Experiment.DEMOS}")
    return demo


def stage_bc(cfg: PipelineConfig, exp: Experiment, demo: demo_io.Demonstrations) -> tuple[Any, dict[str, Any]]:
    train, val = split_episodes(demo, cfg.bc.val_fraction, cfg.seed)
    log(f"behavior cloning: {cfg.bc.epochs} epochs on {len(train)} steps"
        + (f" ({len(val)} held out)" if val is not None else ""))
    result = train_bc(train, val, cfg.env, cfg.policy, cfg.bc, exp / Experiment.BC_LOGS, cfg.seed)
    meta = policy_meta(result.policy, cfg.policy, cfg.env, stage="bc", bc_seconds=result.seconds)
    save_policy(exp / Experiment.BC_POLICY, result.policy, meta)
    exp.write_json(Experiment.BC_CURVE, result.curve)
    log(f"BC trained in {result.seconds:.0f} s -> {exp / Experiment.BC_POLICY}; evaluating "
        f"{cfg.bc.eval_episodes} randomized episodes")
    ev = evaluate_policy(result.policy, cfg.env, cfg.bc.eval_episodes, randomize=True)
    stats = {"train_seconds": result.seconds, "mean_return": ev["mean_return"],
             "mean_forward_speed": ev["mean_forward_speed"], "fall_rate": ev["fall_rate"],
             "final_val_mse": next((r["val_mse"] for r in reversed(result.curve) if "val_mse" in r), None)}
    log(f"BC policy: {figures(ev)}")
    return result.policy, stats


def load_pretrained(cfg: PipelineConfig, with_demos: bool = True) -> tuple[Any, demo_io.Demonstrations | None]:
    """The BC policy of an earlier run (spaces checked), and the demonstrations saved beside it."""
    path = Path(cfg.pretrained_model)
    state, meta = load_policy_file(path)
    obs_space, act_space = observation_space(cfg.env), action_space(cfg.env)
    check_spaces(f"pretrained model {path.name}", meta, obs_space, act_space)
    theirs = meta.get("policy", {})
    for key in ("net_arch", "activation"):
        mine = getattr(cfg.policy, key)
        mine = list(mine) if isinstance(mine, tuple) else mine          # as the metadata's JSON holds it
        if key in theirs and theirs[key] != mine:
            raise PipelineError(f"pretrained model {path.name} has policy.{key} {theirs[key]}, this run {mine}: "
                                f"set --set policy.{key}=... to match (its weights load only into the same network)")
    policy, _ = rebuild_policy(meta, state, path)          # weights that fit, checked before anything is written
    sibling = path.parent / Experiment.DEMOS
    demo = demo_io.load(sibling, obs_space, act_space) if sibling.is_file() else None
    if not with_demos:
        return None, None
    if demo is None:
        log(f"no {Experiment.DEMOS} next to the pretrained model: auxiliary BC loss and warm starts off")
    return policy, demo


# ---------------------------------------------------------------- PPO
def stage_ppo(cfg: PipelineConfig, exp: Experiment, bc_state: dict[str, torch.Tensor] | None,
              demo: demo_io.Demonstrations | None) -> dict[str, Any]:
    resume_from = resume_point(cfg, exp)
    start = resume_from[1] if resume_from else 0
    with stopping.CURRENT.stage("PPO set-up", saved="no new PPO checkpoint (--resume starts PPO from where it was)"):
        venv = make_training_envs(cfg, exp, start, restore=resume_from is not None)
        model = init_ppo(cfg, venv, exp, bc_state, demo, resume_from)
    return learn(cfg, exp, model, venv, start)


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


def learn(cfg: PipelineConfig, exp: Experiment, model: HandoffPPO, venv, start: int) -> dict[str, Any]:
    """Train to the budget with evaluation, checkpoints and videos; a stop signal saves a checkpoint."""
    r, stops = cfg.rl, stopping.CURRENT
    meta = policy_meta(model.policy, cfg.policy, cfg.env, stage="ppo", algo="PPO")
    def earlier(name: str) -> list[dict]:     # what the stopped run had recorded up to its checkpoint
        return [h for h in exp.read_json(name, []) if h["timesteps"] <= start] if cfg.resume else []

    evaluator = EvalCallback.for_config(cfg, exp, meta, earlier(Experiment.EVALUATIONS))
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
    with stops.stage("the final evaluation", saved=f"{final} is saved",
                     continue_with=f"pidog evaluate --model {final}"):
        final_eval = evaluate_policy(model.policy, cfg.env, r.final_eval_episodes, FINAL_EVAL_SEED_BASE,
                                     randomize=True)
    steps_per_s = (model.num_timesteps - start) / max(seconds, 1e-9)
    log(f"PPO done: {model.num_timesteps} steps at {steps_per_s:.0f} steps/s -> {final}; final policy: "
        f"{figures(final_eval)}")
    first = evaluator.history[0] if evaluator.history else None
    return {"timesteps": int(model.num_timesteps), "steps_per_s": steps_per_s, "seconds": seconds,
            "first_eval": first, "final_eval": {k: v for k, v in final_eval.items() if k != "per_episode"},
            "train_fall_rate_first_50k": pooled_fall_rate(metrics.history, 50_000),
            "last": {"model": str(final), "final_eval": {k: v for k, v in final_eval.items() if k != "per_episode"}},
            "selected": selected_summary(cfg, exp, evaluator.selected), "visualization_seconds": viz.seconds}


def selected_summary(cfg: PipelineConfig, exp: Experiment, chosen: dict | None) -> dict[str, Any]:
    """The model to export: the evaluated model selected by speed under the fall-rate limit, re-evaluated
    on the final episodes (None when no evaluation met the limit)."""
    r = cfg.rl
    if chosen is None or not (exp / Experiment.BEST_MODEL).is_file():
        log(f"no evaluation had at most {r.select_max_fall_rate:.0%} falls: no best_model.zip; export "
            f"{exp / Experiment.FINAL_MODEL} only if its falls are acceptable")
        return {"model": None, "max_fall_rate": r.select_max_fall_rate}
    from training.policies import load_policy
    policy, _ = load_policy(exp / Experiment.BEST_MODEL)
    ev = evaluate_policy(policy, cfg.env, r.final_eval_episodes, FINAL_EVAL_SEED_BASE, randomize=True)
    seen = selection_figures(chosen)
    log(f"selected: {exp / Experiment.BEST_MODEL} (evaluated at {chosen['timesteps']:,} steps on {seen['episodes']} "
        f"episodes: {seen['mean_forward_speed']:.3f} m/s, {seen['fall_rate']:.0%} falls); on the final episodes: "
        f"{figures(ev)}; export it with: pidog export --model {exp / Experiment.BEST_MODEL}")
    return {"model": str(exp / Experiment.BEST_MODEL), "timesteps": chosen["timesteps"], "eval": chosen,
            "max_fall_rate": r.select_max_fall_rate, "final_eval": {k: v for k, v in ev.items() if k != "per_episode"}}
