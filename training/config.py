"""Configuration of the training pipeline as dataclasses; the command lines are thin layers over these."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


@dataclass
class PolicyConfig:
    """Network shared by BC and PPO, so the BC state dict loads into PPO with strict=True."""

    net_arch: tuple[int, ...] = (128, 128)          # actor and critic hidden layers (separate nets)
    activation: str = "tanh"                        # tanh | relu | elu
    features_dim: int = 128                         # CNN output size (camera mode)

    def to_kwargs(self) -> dict:
        import torch.nn as nn
        act = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}[self.activation]
        arch = list(self.net_arch)
        return {"net_arch": {"pi": arch, "vf": list(arch)}, "activation_fn": act}


@dataclass
class DemoConfig:
    source: str = "trot"                 # "trot" or a path to a saved model (.zip / .pth)
    n_episodes: int = 50
    noise: float = 0.02                  # DART: std of the noise added to executed expert actions (0.03
                                         # already halves the trot's speed; BC quality is the same at 0-0.02)
    n_envs: int = 4
    randomize: bool = True
    allow_pickle: bool = False           # allow loading pickled demonstrations / foreign SB3 zips


@dataclass
class BCConfig:
    epochs: int = 200
    batch_size: int = 512
    learning_rate: float = 1e-3
    ent_weight: float = 1e-3
    l2_weight: float = 0.0
    val_fraction: float = 0.1            # held-out episodes for validation (0 disables)
    eval_episodes: int = 20              # randomized episodes to evaluate the BC policy after training


@dataclass
class PPOConfig:
    total_timesteps: int = 500_000
    n_envs: int = 4
    vec_env: str = "subproc"             # subproc (one process per env) | dummy (all in this process)
    learning_rate: float = 3e-4
    n_steps: int = 512                   # per env per rollout
    batch_size: int = 512
    n_epochs: int = 5
    gamma: float = 0.995                 # ~200-step horizon: a gait that falls once per episode must
                                         # cost more than going a little faster earns (0.99 did not)
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_reward: bool = True        # scale rewards by a running std of the return (VecNormalize,
                                         # rewards only): returns of ~100 leave a fresh critic unable to fit
    # BC -> PPO hand-off (see README "BC -> PPO hand-off")
    init_log_std: float = -2.5           # reset BC's collapsed log_std to this (std ~0.08 = 7 deg;
                                         # std 0.2 made half the training episodes fall at the start)
    value_warmup_steps: int = 20_000     # env steps that train only the critic
    actor_ramp_steps: int = 50_000       # then the actor's learning rate ramps 0 -> full over this
    bc_coef: float = 20.0                # auxiliary BC loss (action MSE ~1e-3) weight at the start
    bc_decay_steps: int = 300_000        # ... decaying linearly to 0 over this many env steps
    freeze_encoder: bool = False         # camera mode: keep the BC-trained image encoder fixed
    # Bookkeeping
    eval_freq: int = 25_000              # env steps between deterministic evaluations (0 disables)
    eval_episodes: int = 5
    final_eval_episodes: int = 20        # randomized episodes for the final model's figures
    checkpoint_freq: int = 50_000        # env steps between checkpoints
    visualize_freq: int = 50_000         # env steps between visualization episodes (0 disables)
    video_fps: int = 25                  # clip frame rate (sub-sampled from 50 Hz; lower = cheaper)


@dataclass
class PipelineConfig:
    """Everything one run of train_pretrain_finetune.py does; saved as config.json."""

    experiment_name: str = field(default_factory=lambda: time.strftime("bc_rl_%Y%m%d_%H%M%S"))
    output_dir: str = "outputs"
    seed: int = 42
    use_camera: bool = False
    skip_bc: bool = False
    pretrained_model: str | None = None
    resume: bool = False
    live: bool | None = None             # live windows; None = when a display is present
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def to_dict(self) -> dict:
        return asdict(self)
