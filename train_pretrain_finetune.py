#!/usr/bin/env python
"""PiDog: demonstrations -> behavior cloning -> PPO fine-tuning, in one command.

One-shot:   python train_pretrain_finetune.py
Staged:     python train_pretrain_finetune.py --total-rl-timesteps 0 --experiment-name bc_only
            python train_pretrain_finetune.py --skip-bc \\
                --pretrained-model outputs/bc_only/bc_pretrained_policy.pth --experiment-name rl_stage
Resume:     python train_pretrain_finetune.py --resume --experiment-name rl_stage
Quick look: python train_pretrain_finetune.py --quick      (a few minutes end to end)

Everything a run produces goes to <output-dir>/<experiment-name>/ (see README).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

from training.config import BCConfig, DemoConfig, PipelineConfig, PPOConfig  # noqa: E402

QUICK = {"n_demo_episodes": 8, "total_bc_epochs": 30, "total_rl_timesteps": 20_000, "eval_freq": 10_000,
         "checkpoint_freq": 10_000, "visualize_freq": 10_000, "value_warmup_steps": 2_048,
         "actor_ramp_steps": 4_096, "bc_decay_steps": 20_000}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    d, b, p = DemoConfig(), BCConfig(), PPOConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("run")
    g.add_argument("--experiment-name", help="folder under --output-dir (default bc_rl_<timestamp>)")
    g.add_argument("--output-dir", default="outputs")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--resume", action="store_true", help="continue --experiment-name from its latest checkpoint")
    g.add_argument("--quick", action="store_true", help="tiny budgets for a first look (a few minutes)")
    g.add_argument("--use-camera", action="store_true", help="train a CNN+MLP policy on the head camera too")
    g = ap.add_argument_group("demonstrations")
    g.add_argument("--demo-source", default=d.source, help="'trot' or a saved model (.zip/.pth) to imitate")
    g.add_argument("--n-demo-episodes", type=positive_int, default=d.n_episodes)
    g.add_argument("--demo-noise", type=float, default=d.noise, help="DART noise std on executed expert actions")
    g.add_argument("--allow-pickle", action="store_true", help="allow loading pickled files you trust")
    g = ap.add_argument_group("behavior cloning")
    g.add_argument("--skip-bc", action="store_true", help="no demonstrations/BC (PPO from scratch or --pretrained-model)")
    g.add_argument("--pretrained-model", help="bc_pretrained_policy.pth of an earlier run to fine-tune")
    g.add_argument("--total-bc-epochs", type=positive_int, default=b.epochs)
    g.add_argument("--bc-batch-size", type=positive_int, default=b.batch_size)
    g.add_argument("--bc-learning-rate", type=float, default=b.learning_rate)
    g.add_argument("--bc-val-fraction", type=float, default=b.val_fraction)
    g.add_argument("--bc-eval-episodes", type=positive_int, default=b.eval_episodes,
                   help="randomized episodes to evaluate the BC policy after training")
    g = ap.add_argument_group("PPO fine-tuning")
    g.add_argument("--total-rl-timesteps", type=positive_int, default=p.total_timesteps, help="0 skips RL")
    g.add_argument("--n-envs", type=positive_int, default=p.n_envs)
    g.add_argument("--vec-env", choices=["subproc", "dummy"], default=p.vec_env,
                   help="subproc: one process per env (scales with cores); dummy: all envs in this process "
                        "(faster on 2-core machines)")
    g.add_argument("--learning-rate", type=float, default=p.learning_rate)
    g.add_argument("--gamma", type=float, default=p.gamma, help="discount factor")
    g.add_argument("--init-log-std", type=float, default=p.init_log_std, help="log std set before PPO starts")
    g.add_argument("--value-warmup-steps", type=positive_int, default=p.value_warmup_steps,
                   help="env steps that train only the critic")
    g.add_argument("--actor-ramp-steps", type=positive_int, default=p.actor_ramp_steps,
                   help="then the actor learning rate ramps to full over this many steps")
    g.add_argument("--bc-coef", type=float, default=p.bc_coef, help="auxiliary BC loss weight (decays to 0)")
    g.add_argument("--bc-decay-steps", type=positive_int, default=p.bc_decay_steps)
    g.add_argument("--freeze-encoder", action="store_true", help="camera mode: keep the BC image encoder fixed")
    g.add_argument("--eval-freq", type=positive_int, default=p.eval_freq, help="0: only before and after")
    g.add_argument("--eval-episodes", type=positive_int, default=p.eval_episodes)
    g.add_argument("--final-eval-episodes", type=positive_int, default=p.final_eval_episodes)
    g.add_argument("--checkpoint-freq", type=positive_int, default=p.checkpoint_freq)
    g.add_argument("--visualize-freq", type=positive_int, default=p.visualize_freq, help="0 turns videos off")
    g.add_argument("--video-fps", type=int, choices=[5, 10, 25, 50], default=p.video_fps,
                   help="clip frame rate (clips always play in real time; lower renders fewer frames)")
    live = g.add_mutually_exclusive_group()
    live.add_argument("--live", dest="live", action="store_true", default=None, help="show live windows")
    live.add_argument("--no-live", dest="live", action="store_false", help="never open windows")
    return ap


def config_from_args(args: argparse.Namespace, ap: argparse.ArgumentParser) -> PipelineConfig:
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    if args.n_envs < 1:
        ap.error("--n-envs must be at least 1")
    if not 0 <= args.bc_val_fraction < 1:
        ap.error("--bc-val-fraction must be in [0, 1)")
    if args.pretrained_model and not args.skip_bc:
        ap.error("--pretrained-model needs --skip-bc (it replaces the demonstrations and BC stages)")
    if not args.skip_bc and args.n_demo_episodes < 1 and not args.resume:
        ap.error("--n-demo-episodes must be at least 1 (or pass --skip-bc)")
    if args.skip_bc and not args.pretrained_model and args.total_rl_timesteps == 0 and not args.resume:
        ap.error("nothing to do: --skip-bc without --pretrained-model and with --total-rl-timesteps 0")
    if args.resume and not args.experiment_name:
        ap.error("--resume needs --experiment-name")
    if args.use_camera and args.n_demo_episodes > 20 and args.n_demo_episodes == ap.get_default("n_demo_episodes"):
        args.n_demo_episodes = 20          # camera demos are 7 KB a step; keep the default run small
    cfg = PipelineConfig(seed=args.seed, output_dir=args.output_dir, use_camera=args.use_camera,
                         skip_bc=args.skip_bc, pretrained_model=args.pretrained_model, resume=args.resume,
                         live=args.live)
    if args.experiment_name:
        cfg.experiment_name = args.experiment_name
    cfg.demo = DemoConfig(source=args.demo_source, n_episodes=args.n_demo_episodes, noise=args.demo_noise,
                          n_envs=min(args.n_envs, 4), allow_pickle=args.allow_pickle)
    cfg.bc = BCConfig(epochs=args.total_bc_epochs, batch_size=args.bc_batch_size,
                      learning_rate=args.bc_learning_rate, val_fraction=args.bc_val_fraction,
                      eval_episodes=max(1, args.bc_eval_episodes))
    cfg.ppo = PPOConfig(total_timesteps=args.total_rl_timesteps, n_envs=args.n_envs, vec_env=args.vec_env,
                        learning_rate=args.learning_rate, gamma=args.gamma, init_log_std=args.init_log_std,
                        value_warmup_steps=args.value_warmup_steps, actor_ramp_steps=args.actor_ramp_steps,
                        bc_coef=args.bc_coef, bc_decay_steps=args.bc_decay_steps,
                        freeze_encoder=args.freeze_encoder, eval_freq=args.eval_freq,
                        eval_episodes=max(1, args.eval_episodes),
                        final_eval_episodes=max(1, args.final_eval_episodes),
                        checkpoint_freq=args.checkpoint_freq, visualize_freq=args.visualize_freq,
                        video_fps=args.video_fps)
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    cfg = config_from_args(args, ap)
    from training.cli import run_guarded
    from training.pipeline import run
    return run_guarded(lambda: run(cfg))


if __name__ == "__main__":
    sys.exit(main())
