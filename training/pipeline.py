"""The stages of a run, in order: experiment folder -> demonstrations -> BC -> PPO fine-tuning.

`train_pretrain_finetune.py` parses flags into a `PipelineConfig` and calls `run(cfg)`. Every stage
writes into `outputs/<experiment>/`: config.json, demonstrations.npz, bc_pretrained_policy.pth,
bc_logs/, checkpoints/, tensorboard/, evaluations.json, best_model.zip, final_model.zip, summary.json.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import torch

from pidog_env.config import EnvConfig, dataclass_from_dict
from training import demos as demo_io
from training.bc import split_episodes, train_bc
from pidog_env.env import has_display
from training.callbacks import (CheckpointCallback, EvalCallback, MetricsCallback, StopOnSignal,
                                VisualizationCallback, latest_checkpoint)
from training.visualization import LiveViewer
from training.common import PipelineError, check_spaces, make_env, make_vec_env, versions, write_json
from training.config import PipelineConfig
from training.evaluate import evaluate_policy
from training.handoff_ppo import HandoffPPO, RewardNormalizer, reset_log_std
from training.policies import (add_meta_to_zip, load_policy_file, policy_class_name, policy_kwargs,
                               policy_meta, save_policy)

BC_POLICY = "bc_pretrained_policy.pth"
DEMOS = "demonstrations.npz"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def env_config(cfg: PipelineConfig) -> EnvConfig:
    env_cfg = EnvConfig()
    env_cfg.use_camera = cfg.use_camera
    return env_cfg


# ---------------------------------------------------------------- experiment folder
def prepare_experiment(cfg: PipelineConfig) -> Path:
    """Create outputs/<experiment>/ (never reusing one silently) and write config.json."""
    exp = Path(cfg.output_dir) / cfg.experiment_name
    if cfg.resume:
        if not (exp / "config.json").is_file():
            raise PipelineError(f"--resume: no experiment at {exp} (config.json missing)")
        return exp
    if exp.exists() and any(exp.iterdir()):
        raise PipelineError(f"experiment directory {exp} already exists; choose another --experiment-name "
                            "or pass --resume to continue it")
    exp.mkdir(parents=True, exist_ok=True)
    write_json(exp / "config.json", {"config": cfg.to_dict(), "env_config": env_config(cfg).to_dict(),
                                     "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return exp


def load_resumed_config(exp: Path, overrides: PipelineConfig) -> PipelineConfig:
    """The saved config of `exp`, with the total RL budget taken from the command line."""
    saved = json.loads((exp / "config.json").read_text())["config"]
    cfg = dataclass_from_dict(PipelineConfig, saved)
    cfg.resume = True
    cfg.ppo.total_timesteps = overrides.ppo.total_timesteps
    cfg.live = overrides.live
    return cfg


# ---------------------------------------------------------------- stages
def stage_demos(cfg: PipelineConfig, exp: Path) -> demo_io.Demonstrations:
    log(f"recording {cfg.demo.n_episodes} demonstration episodes from '{cfg.demo.source}' "
        f"(DART noise {cfg.demo.noise}, {cfg.demo.n_envs} envs)")
    demo = demo_io.generate(cfg.demo, env_config(cfg), cfg.seed)
    demo_io.save(demo, exp / DEMOS)
    s = demo.summary()
    log(f"demonstrations: {s['transitions']} steps, return {s['mean_return']:.1f}, "
        f"speed {s['mean_forward_speed']:.3f} m/s, falls {s['fall_rate']:.0%} -> {exp / DEMOS}")
    return demo


def stage_bc(cfg: PipelineConfig, exp: Path, demo: demo_io.Demonstrations) -> tuple[Any, dict[str, Any]]:
    train, val = split_episodes(demo, cfg.bc.val_fraction, cfg.seed)
    log(f"behavior cloning: {cfg.bc.epochs} epochs on {len(train)} steps"
        + (f" ({len(val)} held out)" if val is not None else ""))
    env_cfg = env_config(cfg)
    result = train_bc(train, val, env_cfg, cfg.policy, cfg.bc, exp / "bc_logs", cfg.seed)
    meta = policy_meta(result.policy, cfg.policy, env_cfg, stage="bc", bc_seconds=result.seconds)
    save_policy(exp / BC_POLICY, result.policy, meta)
    (exp / "bc_curve.json").write_text(json.dumps(result.curve))
    log(f"BC trained in {result.seconds:.0f} s -> {exp / BC_POLICY}; evaluating "
        f"{cfg.bc.eval_episodes} randomized episodes")
    ev = evaluate_policy(result.policy, env_cfg, cfg.bc.eval_episodes, randomize=True)
    stats = {"train_seconds": result.seconds, "mean_return": ev["mean_return"],
             "mean_forward_speed": ev["mean_forward_speed"], "fall_rate": ev["fall_rate"],
             "final_val_mse": next((r["val_mse"] for r in reversed(result.curve) if "val_mse" in r), None)}
    log(f"BC policy: return {ev['mean_return']:.1f}, speed {ev['mean_forward_speed']:.3f} m/s, "
        f"falls {ev['fall_rate']:.0%}")
    return result.policy, stats


def load_bc_state(path: Path, env_cfg: EnvConfig) -> dict[str, torch.Tensor]:
    state, meta = load_policy_file(path)
    env = make_env(env_cfg)
    try:
        check_spaces(f"pretrained model {path.name}", meta, env.observation_space, env.action_space)
    finally:
        env.close()
    return state


def stage_ppo(cfg: PipelineConfig, exp: Path, bc_state: dict[str, torch.Tensor] | None,
              bc_demos: demo_io.Demonstrations | None) -> dict[str, Any]:
    p = cfg.ppo
    env_cfg = env_config(cfg)
    ckpt_dir, tb_dir = exp / "checkpoints", exp / "tensorboard"
    resume_from = latest_checkpoint(ckpt_dir) if cfg.resume else None
    if cfg.resume and resume_from is None:
        raise PipelineError(f"--resume: no checkpoint in {ckpt_dir}")
    start_steps = resume_from[1] if resume_from else 0
    if start_steps >= p.total_timesteps:
        raise PipelineError(f"--resume: checkpoint is at {start_steps} steps, already >= "
                            f"--total-rl-timesteps {p.total_timesteps}")

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)     # env workers inherit "ignore Ctrl-C"
    try:
        venv = make_vec_env(env_cfg, p.n_envs, cfg.seed + start_steps, subprocess=p.vec_env == "subproc")
    finally:
        signal.signal(signal.SIGINT, previous)
    if p.normalize_reward:
        venv = RewardNormalizer.wrap(venv, p.gamma, ckpt_dir if resume_from else None)
    demos_arrays = (bc_demos.obs, bc_demos.acts) if bc_demos is not None and p.bc_coef > 0 else None
    model = build_model(cfg, venv, from_bc=not _scratch(cfg), bc_demos=demos_arrays, tb_dir=tb_dir)
    if resume_from is not None:
        model.set_parameters(str(resume_from[0]), exact_match=True, device="cpu")
        model.num_timesteps = start_steps
        model._num_timesteps_at_start = start_steps
        log(f"resuming from {resume_from[0].name} at {start_steps} steps")
    elif bc_state is not None:
        model.policy.load_state_dict(bc_state, strict=True)
        reset_log_std(model, p.init_log_std)
        log(f"PPO initialized from BC (strict state-dict load), log_std reset to {p.init_log_std}")

    meta = policy_meta(model.policy, cfg.policy, env_cfg, stage="ppo", algo="PPO")
    history_path = exp / "evaluations.json"
    history = json.loads(history_path.read_text()) if cfg.resume and history_path.is_file() else []
    evaluator = EvalCallback(lambda pol: evaluate_policy(pol, env_cfg, p.eval_episodes, randomize=True),
                             p.eval_freq, exp, meta, history)
    evaluator.verbose = 1
    checkpoints = CheckpointCallback(p.checkpoint_freq, ckpt_dir, meta)
    stopper = StopOnSignal().install()
    metrics = MetricsCallback()
    callbacks = [metrics, evaluator, checkpoints, stopper]
    viz = VisualizationCallback(p.visualize_freq, exp, env_cfg, lambda: evaluator.history,
                                lambda: metrics.history, seed=cfg.seed, fps=p.video_fps)
    callbacks.append(viz)
    live = LiveViewer(exp) if (cfg.live if cfg.live is not None else has_display()) else None
    log(f"PPO: {p.total_timesteps - start_steps} steps over {p.n_envs} envs ({p.vec_env}) "
        f"(TensorBoard: tensorboard --logdir {tb_dir})")
    t0 = time.perf_counter()
    try:
        model.learn(total_timesteps=p.total_timesteps - start_steps, callback=callbacks, progress_bar=True,
                    reset_num_timesteps=False, tb_log_name="PPO")
    finally:
        stopper.uninstall()
        seconds = time.perf_counter() - t0
        if live is not None:
            live.close()
        if stopper.received is not None or model.num_timesteps < p.total_timesteps:
            path = checkpoints.save()
            log(f"stopped at {model.num_timesteps} steps; checkpoint {path} (continue with --resume)")
        venv.close()
    if stopper.received is not None:
        raise KeyboardInterrupt
    final = exp / "final_model.zip"
    model.save(final)
    add_meta_to_zip(final, {**meta, "timesteps": int(model.num_timesteps)})
    final_eval = evaluate_policy(model.policy, env_cfg, p.final_eval_episodes, randomize=True)
    steps_per_s = (model.num_timesteps - start_steps) / max(seconds, 1e-9)
    log(f"PPO done: {model.num_timesteps} steps at {steps_per_s:.0f} steps/s -> {final}; final policy: "
        f"return {final_eval['mean_return']:.1f}, speed {final_eval['mean_forward_speed']:.3f} m/s, "
        f"falls {final_eval['fall_rate']:.0%}")
    first = evaluator.history[0] if evaluator.history else None
    return {"timesteps": int(model.num_timesteps), "steps_per_s": steps_per_s, "seconds": seconds,
            "first_eval": first, "final_eval": {k: v for k, v in final_eval.items() if k != "per_episode"},
            "best_eval_return": evaluator.best, "visualization_seconds": viz.seconds}


def build_model(cfg: PipelineConfig, venv, from_bc: bool, bc_demos: tuple | None = None,
                tb_dir: Path | None = None) -> HandoffPPO:
    """The PPO every entry point trains: hand-off schedule on when it starts from BC."""
    p = cfg.ppo
    return HandoffPPO(
        policy_class_name(venv.observation_space), venv, learning_rate=p.learning_rate, n_steps=p.n_steps,
        batch_size=p.batch_size, n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda,
        clip_range=p.clip_range, ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
        policy_kwargs={**policy_kwargs(cfg.policy, venv.observation_space), "log_std_init": p.init_log_std},
        tensorboard_log=str(tb_dir) if tb_dir else None, seed=cfg.seed, device="cpu", verbose=0,
        value_warmup_steps=p.value_warmup_steps if from_bc else 0,
        actor_ramp_steps=p.actor_ramp_steps if from_bc else 0,
        bc_coef=p.bc_coef if from_bc else 0.0, bc_decay_steps=p.bc_decay_steps, bc_demos=bc_demos,
        freeze_encoder=p.freeze_encoder)


def _scratch(cfg: PipelineConfig) -> bool:
    return cfg.skip_bc and cfg.pretrained_model is None


# ---------------------------------------------------------------- the whole run
def validate_inputs(cfg: PipelineConfig) -> None:
    """Check the files a run needs before anything is written, so bad input leaves no half-made folder."""
    if cfg.resume:
        return
    env_cfg = env_config(cfg)
    if cfg.pretrained_model:
        load_bc_state(Path(cfg.pretrained_model), env_cfg)
    elif not cfg.skip_bc and cfg.demo.source != "trot":
        demo_io.make_expert(cfg.demo.source, env_cfg, cfg.demo.allow_pickle)


def run(cfg: PipelineConfig) -> dict[str, Any]:
    torch.set_num_threads(1)            # the env workers need the other cores
    validate_inputs(cfg)
    exp = prepare_experiment(cfg)
    if cfg.resume:
        cfg = load_resumed_config(exp, cfg)
    env_cfg = env_config(cfg)
    summary_path = exp / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.update({"experiment": str(exp), "versions": versions()})
    bc_state, demo = None, None
    env = make_env(env_cfg)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()

    if cfg.resume:
        if (exp / DEMOS).is_file():
            demo = demo_io.load(exp / DEMOS, obs_space, act_space)
    elif cfg.pretrained_model:
        bc_state = load_bc_state(Path(cfg.pretrained_model), env_cfg)
        sibling = Path(cfg.pretrained_model).parent / DEMOS
        if cfg.ppo.bc_coef > 0 and sibling.is_file():
            demo = demo_io.load(sibling, obs_space, act_space)
        elif cfg.ppo.bc_coef > 0:
            log(f"no {DEMOS} next to the pretrained model: auxiliary BC loss off")
        summary["pretrained_model"] = str(cfg.pretrained_model)
    elif not cfg.skip_bc:
        demo = stage_demos(cfg, exp)
        summary["demonstrations"] = demo.summary()
        policy, summary["bc"] = stage_bc(cfg, exp, demo)
        bc_state = policy.state_dict()
        write_json(summary_path, summary)

    if cfg.ppo.total_timesteps > 0:
        summary["ppo"] = stage_ppo(cfg, exp, bc_state, demo)
    write_json(summary_path, summary)
    log(f"summary -> {summary_path}")
    return summary
