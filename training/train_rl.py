"""Reinforcement learning on PiDog-v0 alone: PPO, SAC or TD3, from scratch or from a BC policy.

    python training/train_rl.py --algo ppo --timesteps 1000000 --experiment-name ppo_scratch
    python training/train_rl.py --algo ppo --pretrained-model outputs/bc1/bc_pretrained_policy.pth
    python training/train_rl.py --algo sac --timesteps 300000 --experiment-name sac1
    python training/train_rl.py --algo td3 --pretrained-model outputs/bc1/bc_pretrained_policy.pth

PPO runs through the same code as train_pretrain_finetune.py --skip-bc (hand-off schedule, evaluation,
checkpoints, --resume). SAC and TD3 use SB3 with the same network sizes; from a BC policy their actor
is first fitted to the BC policy's actions on the demonstrations saved beside it (actor warm start),
then they learn off-policy. Results land in outputs/<experiment>/final_model.zip.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from training.cli import run_guarded
from training.common import PipelineError
from training.config import PipelineConfig, PPOConfig


def run_off_policy(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    from training import demos as demo_io
    from training.common import make_env, make_vec_env, write_json
    from training.evaluate import evaluate_policy
    from training.pipeline import env_config, log, prepare_experiment
    from training.policies import add_meta_to_zip, load_policy, policy_meta
    torch.set_num_threads(1)            # small networks: more threads only contend with the env
    cfg = PipelineConfig(seed=args.seed, output_dir=args.output_dir, skip_bc=True,
                         pretrained_model=args.pretrained_model, live=False)
    if args.experiment_name:
        cfg.experiment_name = args.experiment_name
    env_cfg = env_config(cfg)
    warm = None
    if args.pretrained_model:
        bc_policy, _ = load_policy(args.pretrained_model)
        demos_path = Path(args.pretrained_model).parent / "demonstrations.npz"
        if not demos_path.is_file():
            raise PipelineError(f"actor warm start needs {demos_path} beside the BC policy")
        env = make_env(env_cfg)
        demo = demo_io.load(demos_path, env.observation_space, env.action_space)
        env.close()
        warm = (demo.obs, bc_policy.predict(demo.obs, deterministic=True)[0])
    exp = prepare_experiment(cfg)
    venv = make_vec_env(env_cfg, 1, cfg.seed, subprocess=False)
    arch = list(cfg.policy.net_arch)
    common = dict(policy_kwargs={"net_arch": arch}, tensorboard_log=str(exp / "tensorboard"), seed=cfg.seed,
                  device="cpu", learning_starts=5_000 if warm is None else 1_000, buffer_size=300_000)
    if args.algo == "sac":
        model = SAC("MlpPolicy", venv, learning_rate=args.learning_rate, **common)
    else:
        noise = NormalActionNoise(np.zeros(8), 0.05 * np.ones(8))
        model = TD3("MlpPolicy", venv, learning_rate=args.learning_rate, action_noise=noise, **common)
    if warm is not None:
        obs, acts = warm
        actor = model.actor
        opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        acts_t = torch.as_tensor(acts, dtype=torch.float32)
        for _ in range(1000):
            idx = torch.randint(0, len(obs_t), (512,))
            pred = actor(obs_t[idx], deterministic=True) if args.algo == "sac" else actor(obs_t[idx])
            loss = torch.nn.functional.mse_loss(pred, acts_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if args.algo == "td3":
            model.actor_target.load_state_dict(model.actor.state_dict())
        warm_eval = evaluate_policy(model.policy, env_cfg, 3, randomize=True)
        log(f"{args.algo.upper()} actor warm-started from the BC policy (action MSE {loss.item():.2e}): "
            f"return {warm_eval['mean_return']:.1f}, speed {warm_eval['mean_forward_speed']:.3f} m/s, "
            f"falls {warm_eval['fall_rate']:.0%}")
    callbacks = [FreezeActor(args.critic_warmup_steps)] if warm is not None else []
    t0 = time.perf_counter()
    model.learn(args.timesteps, progress_bar=True, callback=callbacks)
    path = exp / "final_model.zip"
    model.save(path)
    add_meta_to_zip(path, policy_meta(model.policy, cfg.policy, env_cfg, stage="rl", algo=args.algo.upper()))
    ev = evaluate_policy(model.policy, env_cfg, 10, randomize=True)
    write_json(exp / "summary.json", {"algo": args.algo, "timesteps": args.timesteps,
                                      "seconds": time.perf_counter() - t0,
                                      "final_eval": {k: v for k, v in ev.items() if k != "per_episode"}})
    venv.close()
    log(f"{args.algo.upper()}: return {ev['mean_return']:.1f}, speed {ev['mean_forward_speed']:.3f} m/s, "
        f"falls {ev['fall_rate']:.0%} -> {path}")


def _freeze_actor_callback():
    from stable_baselines3.common.callbacks import BaseCallback

    class FreezeActor(BaseCallback):
        """Critic warm-up: the warm-started actor stays fixed until the critic has `steps` of data."""

        def __init__(self, steps: int) -> None:
            super().__init__()
            self.steps, self.frozen = steps, False

        def _set(self, trainable: bool) -> None:
            for p in self.model.actor.parameters():
                p.requires_grad_(trainable)
            self.frozen = not trainable

        def _on_training_start(self) -> None:
            if self.steps > 0:
                self._set(False)

        def _on_step(self) -> bool:
            if self.frozen and self.num_timesteps >= self.steps:
                self._set(True)
            return True

    return FreezeActor


def FreezeActor(steps: int):  # noqa: N802 (a factory that reads like the class it returns)
    return _freeze_actor_callback()(steps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", choices=["ppo", "sac", "td3"], default="ppo")
    ap.add_argument("--timesteps", type=int, default=PPOConfig().total_timesteps)
    ap.add_argument("--pretrained-model", help="bc_pretrained_policy.pth to start from")
    ap.add_argument("--learning-rate", type=float, default=3e-4)
    ap.add_argument("--critic-warmup-steps", type=int, default=10_000,
                    help="SAC/TD3 from BC: steps before the warm-started actor starts to change")
    ap.add_argument("--n-envs", type=int, default=PPOConfig().n_envs, help="PPO only")
    ap.add_argument("--experiment-name")
    ap.add_argument("--output-dir", default="outputs")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--resume", action="store_true", help="PPO only: continue --experiment-name")
    args = ap.parse_args(argv)
    if args.timesteps < 1 or args.n_envs < 1:
        ap.error("--timesteps and --n-envs must be positive")
    if args.algo == "ppo":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the top-level CLI module
        from train_pretrain_finetune import main as pipeline_main
        forward = ["--skip-bc", "--total-rl-timesteps", str(args.timesteps), "--learning-rate",
                   str(args.learning_rate), "--n-envs", str(args.n_envs), "--output-dir", args.output_dir,
                   "--seed", str(args.seed)]
        forward += ["--pretrained-model", args.pretrained_model] if args.pretrained_model else []
        forward += ["--experiment-name", args.experiment_name] if args.experiment_name else []
        forward += ["--resume"] if args.resume else []
        return pipeline_main(forward)
    if args.resume:
        ap.error("--resume is available for PPO")
    return run_guarded(lambda: run_off_policy(args))


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    sys.exit(main())
