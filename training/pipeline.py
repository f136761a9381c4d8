"""The stages of a run, in order: experiment folder -> demonstrations -> behavior cloning -> RL
(`training.ppo_stage` or `training.off_policy`).

`pidog train|imitate|rl` (and the documented scripts) build a `PipelineConfig` and call `run(cfg)`.
Every stage writes into the experiment folder (`training.experiment.Experiment` names each file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from pidog_env.env import action_space, has_display, observation_space
from training import demos as demo_io
from training import stopping
from training.bc import split_episodes, train_bc
from training.common import PipelineError, check_spaces, versions
from training.config import PipelineConfig
from training.evaluation import FINAL_EVAL_SEED_BASE, EvalPool, evaluate_policy
from training.experiment import Experiment, checkpoint_steps
from training.off_policy import stage_off_policy
from training.policies import load_policy, load_policy_file, policy_meta, rebuild_policy, save_policy
from training.ppo_stage import stage_ppo
from training.report import figures, log


# ---------------------------------------------------------------- the whole run
def run(cfg: PipelineConfig, assignments: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Run every stage `cfg` asks for. On --resume, `assignments` are the settings the user typed.

    A stop signal ends the current stage as `training.stopping` describes; `Interrupted` then carries
    what was saved and the command that continues the run."""
    torch.set_num_threads(1)            # the env workers need the other cores
    stops = stopping.CURRENT.install()
    exp = Experiment(cfg.experiment_dir)
    try:
        with EvalPool(1 if cfg.rl.vec_env == "dummy" else None) as pool:     # evaluations on every core
            return _run(cfg, exp, assignments or [], pool)
    except stopping.Interrupted as exc:
        exc.continue_with = exc.continue_with or \
            f"the same command with --resume (--experiment-name {exp.root.name} --output-dir {exp.root.parent})"
        raise
    finally:
        stops.uninstall()


def _run(cfg: PipelineConfig, exp: Experiment, assignments: list[tuple[str, Any]], pool: EvalPool) -> dict[str, Any]:
    stage = stopping.CURRENT.stage
    timings: dict[str, float] = {}
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
            t0 = time.perf_counter()
            with stage("recording demonstrations", saved="nothing is saved before the recording ends"):
                demo = stage_demos(cfg, exp)
            timings["demonstrations"] = time.perf_counter() - t0
            summary["demonstrations"] = demo.summary()
            exp.write_json(Experiment.SUMMARY, summary)
        if cfg.env.obs.episode_physics:      # BC and PPO's BC term never see the privileged input (training.distill)
            from training.distill import blind_demonstrations
            demo = blind_demonstrations(demo)
        if cfg.resume and (exp / Experiment.BC_POLICY).is_file():
            bc_policy, _ = load_policy(exp / Experiment.BC_POLICY)
        else:
            t0 = time.perf_counter()
            with stage("behavior cloning", saved=f"{Experiment.DEMOS} is saved; --resume clones from it"):
                bc_policy, summary["bc"] = stage_bc(cfg, exp, demo, pool)
            timings["bc_evaluation"] = summary["bc"].get("eval_seconds", 0.0)
            timings["bc"] = time.perf_counter() - t0 - timings["bc_evaluation"]
        exp.write_json(Experiment.SUMMARY, summary)

    if cfg.rl.total_timesteps > 0:
        if cfg.rl.algo == "ppo":
            bc_state = bc_policy.state_dict() if bc_policy is not None else None
            # A run stopped while distilling resumes at the distillation: its PPO budget is spent.
            teacher_done = cfg.distill.history and cfg.resume and (exp / Experiment.FINAL_MODEL).is_file() and \
                (checkpoint_steps(exp) or 0) >= cfg.rl.total_timesteps
            if not teacher_done:
                summary["ppo"] = stage_ppo(cfg, exp, bc_state, demo, pool)
                timings.update(summary["ppo"].get("timings", {}))
            if cfg.distill.history and not (cfg.resume and (exp / Experiment.STUDENT).is_file()):
                exp.write_json(Experiment.SUMMARY, summary)
                t0 = time.perf_counter()
                with stage("distillation", saved="the teacher (best_model.zip or final_model.zip) is saved; "
                                                  "--resume distils again from it"):
                    summary["distill"] = stage_distill(cfg, exp, pool)
                timings["distillation"] = time.perf_counter() - t0
        else:
            summary["off_policy"] = stage_off_policy(cfg, exp, bc_policy, demo, pool)
            timings.update(summary["off_policy"].get("timings", {}))
    summary["timings"] = {k: round(v, 2) for k, v in timings.items()}     # seconds per stage, this session
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


# ---------------------------------------------------------------- teacher -> student
def stage_distill(cfg: PipelineConfig, exp: Experiment, pool: EvalPool) -> dict[str, Any]:
    """DAgger from the PPO stage's teacher (best_model.zip, else final_model.zip) into `student_policy.pth`,
    evaluated on the final episodes like every shipped model."""
    from training.distill import distill
    teacher_path = exp / Experiment.BEST_MODEL
    if not teacher_path.is_file():
        teacher_path = exp / Experiment.FINAL_MODEL
    teacher, meta = load_policy(teacher_path)
    log(f"distilling {teacher_path} into a student with {cfg.distill.history} past frames")
    from torch.utils.tensorboard import SummaryWriter
    tb = SummaryWriter(str(exp / Experiment.TENSORBOARD / "distill"))

    def write(it: int, row: dict[str, Any]) -> None:
        for key in ("loss", "fall_rate", "mean_forward_speed"):
            if row[key] is not None:
                tb.add_scalar(f"distill/{key}", row[key], it)
        tb.flush()
    try:
        student, s_cfg, result = distill(teacher, meta["env_config_obj"], cfg.distill, cfg.policy, cfg.seed,
                                         log=log, writer=write)
    finally:
        tb.close()
    exp.write_json(Experiment.DISTILL_CURVE, result["curve"])
    save_policy(exp / Experiment.STUDENT, student,
                policy_meta(student, cfg.policy, s_cfg, stage="distill", teacher=str(teacher_path)))
    ev = evaluate_policy(student, s_cfg, cfg.rl.final_eval_episodes, FINAL_EVAL_SEED_BASE, randomize=True, pool=pool)
    ev.pop("per_episode")
    log(f"student -> {exp / Experiment.STUDENT}; on the final episodes: {figures(ev)}; export it with: "
        f"pidog export --model {exp / Experiment.STUDENT}")
    return {"teacher": str(teacher_path), "model": str(exp / Experiment.STUDENT), "final_eval": ev,
            "seconds": result["seconds"], "dataset_steps": result["dataset_steps"], "history": result["history"]}


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


def stage_bc(cfg: PipelineConfig, exp: Experiment, demo: demo_io.Demonstrations,
             pool: EvalPool | None = None) -> tuple[Any, dict[str, Any]]:
    train, val = split_episodes(demo, cfg.bc.val_fraction, cfg.seed)
    log(f"behavior cloning: {cfg.bc.epochs} epochs on {len(train)} steps"
        + (f" ({len(val)} held out)" if val is not None else ""))
    result = train_bc(train, val, cfg.env, cfg.policy, cfg.bc, exp / Experiment.BC_LOGS, cfg.seed)
    if cfg.env.obs.episode_physics:           # a teacher: cloned without its privileged input (training.distill)
        from training.distill import zero_privileged_weights
        zero_privileged_weights(result.policy)
    meta = policy_meta(result.policy, cfg.policy, cfg.env, stage="bc", bc_seconds=result.seconds)
    save_policy(exp / Experiment.BC_POLICY, result.policy, meta)
    exp.write_json(Experiment.BC_CURVE, result.curve)
    log(f"BC trained in {result.seconds:.0f} s -> {exp / Experiment.BC_POLICY}; evaluating "
        f"{cfg.bc.eval_episodes} randomized episodes")
    t0 = time.perf_counter()
    ev = evaluate_policy(result.policy, cfg.env, cfg.bc.eval_episodes, randomize=True, pool=pool)
    stats = {"train_seconds": result.seconds, "eval_seconds": time.perf_counter() - t0, "mean_return": ev["mean_return"],
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
