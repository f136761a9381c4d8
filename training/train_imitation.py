"""Imitation learning on its own: behavior cloning (default) or GAIL, from saved or fresh demonstrations.

    python training/train_imitation.py --experiment-name bc_only                        # trot demos + BC
    python training/train_imitation.py --demos outputs/bc1/demonstrations.npz --experiment-name bc2
    python training/train_imitation.py --algo gail --demos outputs/bc1/demonstrations.npz \\
        --gail-timesteps 200000 --experiment-name gail1

BC writes bc_pretrained_policy.pth (the same file the pipeline writes, usable with
train_pretrain_finetune.py --skip-bc --pretrained-model). GAIL (imitation's GAIL with a PPO generator
and a BasicRewardNet discriminator) writes final_model.zip.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training.cli import run_guarded
from training.common import PipelineError
from training.config import BCConfig, DemoConfig, PipelineConfig


def run(args: argparse.Namespace) -> None:
    from training import demos as demo_io
    from training.common import make_env, write_json
    from training.pipeline import env_config, log, prepare_experiment, stage_bc, stage_demos
    cfg = PipelineConfig(seed=args.seed, output_dir=args.output_dir, live=False)
    if args.experiment_name:
        cfg.experiment_name = args.experiment_name
    cfg.demo = DemoConfig(n_episodes=args.n_demo_episodes, noise=args.demo_noise, allow_pickle=args.allow_pickle)
    cfg.bc = BCConfig(epochs=args.epochs)
    env = make_env(env_config(cfg))
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    demo = demo_io.load(args.demos, obs_space, act_space, args.allow_pickle) if args.demos else None
    exp = prepare_experiment(cfg)
    if demo is None:
        demo = stage_demos(cfg, exp)
    summary = {"algo": args.algo, "demonstrations": demo.summary()}
    if args.algo == "bc":
        _, summary["bc"] = stage_bc(cfg, exp, demo)
    else:
        summary["gail"] = train_gail(cfg, exp, demo, args.gail_timesteps)
    write_json(exp / "summary.json", summary)
    log(f"summary -> {exp / 'summary.json'}")


def train_gail(cfg: PipelineConfig, exp: Path, demo, timesteps: int) -> dict:
    import numpy as np
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data import types
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm

    from training.common import make_vec_env
    from training.evaluate import evaluate_policy
    from training.pipeline import build_model, env_config, log
    from training.policies import add_meta_to_zip, policy_meta
    if isinstance(demo.obs, dict):
        raise PipelineError("GAIL here supports vector observations only (not --use-camera)")
    env_cfg = env_config(cfg)
    venv = make_vec_env(env_cfg, cfg.ppo.n_envs, cfg.seed, subprocess=False, for_rollouts=True)
    learner = build_model(cfg, venv, from_bc=False, tb_dir=exp / "tensorboard")
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    # GAIL's discriminator needs (s, a, s', done); consecutive demo rows of one episode give s'.
    ends = np.cumsum(demo.episode_lengths)
    dones = np.zeros(len(demo), bool)
    dones[ends - 1] = True
    next_obs = np.concatenate([demo.obs[1:], demo.obs[-1:]])
    transitions = types.Transitions(obs=demo.obs, acts=demo.acts, infos=np.array([{}] * len(demo)),
                                    next_obs=next_obs, dones=dones)
    gail = GAIL(demonstrations=transitions, demo_batch_size=1024, gen_replay_buffer_capacity=4096,
                n_disc_updates_per_round=4, venv=venv, gen_algo=learner, reward_net=reward_net,
                allow_variable_horizon=True)
    log(f"GAIL: {timesteps} generator steps")
    gail.train(timesteps)
    path = exp / "final_model.zip"
    learner.save(path)
    add_meta_to_zip(path, policy_meta(learner.policy, cfg.policy, env_cfg, stage="gail", algo="PPO"))
    ev = evaluate_policy(learner.policy, env_cfg, 10, randomize=True)
    venv.close()
    log(f"GAIL policy: return {ev['mean_return']:.1f}, speed {ev['mean_forward_speed']:.3f} m/s, "
        f"falls {ev['fall_rate']:.0%} -> {path}")
    return {k: v for k, v in ev.items() if k != "per_episode"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", choices=["bc", "gail"], default="bc")
    ap.add_argument("--demos", help="demonstrations.npz to learn from (default: record trot demos)")
    ap.add_argument("--n-demo-episodes", type=int, default=DemoConfig().n_episodes)
    ap.add_argument("--demo-noise", type=float, default=DemoConfig().noise)
    ap.add_argument("--epochs", type=int, default=BCConfig().epochs, help="BC epochs")
    ap.add_argument("--gail-timesteps", type=int, default=200_000)
    ap.add_argument("--experiment-name")
    ap.add_argument("--output-dir", default="outputs")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--allow-pickle", action="store_true")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.n_demo_episodes < 1 or args.gail_timesteps < 1:
        ap.error("--epochs, --n-demo-episodes and --gail-timesteps must be positive")
    return run_guarded(lambda: run(args))


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    sys.exit(main())
