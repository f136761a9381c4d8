"""The pipeline's one configuration tree. `config.json` of every run is `PipelineConfig.to_dict()`.

Every leaf is a setting with bounds and a help line (`pidog config` lists them all); the command
lines set any of them with `--set key.path=value`, and presets (`training/presets/*.json`) are named
sets of such assignments. Validation (`validate`) runs before anything is created.

Adding a setting: add a field here (with its bounds and help), then use it where it matters. No flag
code is needed: `--set ppo.my_setting=...` works at once, and `config.json` records it.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pidog_env.config import EnvConfig
from pidog_env.config_tree import ConfigError, Removed, setting, validate

__all__ = ["BCConfig", "ConfigError", "DemoConfig", "DistillConfig", "OffPolicyConfig", "PipelineConfig",
           "PolicyConfig", "PPOConfig", "RLConfig", "validate"]

MAX_ROLLOUT = 2_000_000                 # PPO rollout buffer rows (n_steps x n_envs) held in memory
SELECTION_SEEDS = 10_000               # seeds for evaluations and confirmations before the final evaluation's
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Why settings went (CHANGELOG.md lists each; the code is in the commit before their removal, 1c36ff7).
_GSDE = "gSDE exploration fell more often than Gaussian noise at a comparable std (CHANGELOG.md)"
_SAC = "a SAC-from-BC variant measured and not adopted (CHANGELOG.md)"
_LIB = "never changed or measured here; the library's default applies"
_CURRICULUM = ("the randomization curriculum shipped 1.06-1.20x the trot against the default's 1.26-1.31x and still "
               "fell more than the trot on 3-6 robustness conditions (CHANGELOG.md)")
_GAIL = ("GAIL was never measured against BC here and is not part of the pipeline; its code is in commit 1c36ff7 "
         "(training/gail.py)")


@dataclass
class PolicyConfig:
    """Network shared by BC and PPO, so the BC state dict loads into PPO with strict=True."""

    REMOVED = {"use_sde": Removed(False, _GSDE),
               "features_dim": Removed(128, "the camera encoder's output size is fixed (training.policies.CNN_FEATURES); "
                                            "other sizes were never measured")}

    net_arch: tuple[int, ...] = setting((128, 128), ge=1, le=4096,
                                        help="actor and critic hidden layers (separate nets)")
    activation: str = setting("tanh", choices=("tanh", "relu", "elu"), help="hidden-layer activation")

    def check(self) -> None:
        if not self.net_arch:
            raise ConfigError("policy.net_arch needs at least one layer")

    def to_kwargs(self) -> dict:
        import torch.nn as nn
        act = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}[self.activation]
        arch = list(self.net_arch)
        return {"net_arch": {"pi": arch, "vf": list(arch)}, "activation_fn": act}


@dataclass
class DemoConfig:
    REMOVED = {"randomize": Removed(True, "demonstrations are recorded under the training randomization, where the "
                                          "policy is fine-tuned; recording without it was never measured")}

    source: str = setting("trot", help="expert to record: 'trot' or a saved model (.zip/.pth)")
    path: str | None = setting(None, help="use these saved demonstrations (.npz) instead of recording")
    n_episodes: int = setting(50, ge=1, le=100_000, help="demonstration episodes to record")
    noise: float = setting(0.02, ge=0, le=1, help="DART: std of the noise on executed expert actions "
                                                 "(0.03 already halves the trot's speed)")
    n_envs: int = setting(4, ge=1, le=64, help="envs recording in parallel")
    allow_pickle: bool = setting(False, help="allow loading pickled demonstrations / foreign SB3 zips")


@dataclass
class BCConfig:
    REMOVED = {"ent_weight": Removed(1e-3, _LIB), "l2_weight": Removed(0.0, _LIB)}

    epochs: int = setting(200, ge=1, le=100_000, help="behavior cloning epochs")
    batch_size: int = setting(512, ge=1, le=1_000_000, help="BC minibatch size")
    learning_rate: float = setting(1e-3, gt=0, le=1, help="BC Adam learning rate")
    val_fraction: float = setting(0.1, ge=0, lt=1, help="held-out episodes for validation (0 disables)")
    eval_episodes: int = setting(20, ge=1, le=10_000, help="randomized episodes to evaluate the BC policy")


@dataclass
class RLConfig:
    """What any RL algorithm does around its updates: budget, evaluation, checkpoints, videos."""

    REMOVED = {"curriculum": Removed(False, _CURRICULUM), "curriculum_start": Removed(0.5, _CURRICULUM),
               "curriculum_step": Removed(0.1, _CURRICULUM), "curriculum_max": Removed(1.5, _CURRICULUM),
               "curriculum_max_fall_rate": Removed(0.05, _CURRICULUM),
               "video_fps": Removed(25, "clips are written at 25 fps (real time at every second control step)")}

    algo: str = setting("ppo", choices=("ppo", "sac", "td3"), help="RL algorithm after imitation")
    total_timesteps: int = setting(500_000, ge=0, le=10**10, help="RL env steps (0 skips RL)")
    n_envs: int = setting(4, ge=1, le=256, help="parallel training envs (PPO)")
    vec_env: str = setting("batched", choices=("batched", "subproc", "dummy"),
                           help="batched: one block of envs per core, the first stepped by the training process, "
                                "shared-memory observations (training/vec_env.py); subproc: SB3's SubprocVecEnv, "
                                "one process per env; dummy: all in the training process, evaluations too (otherwise they "
                                "run on every core: training.evaluation.EvalPool)")
    eval_freq: int = setting(25_000, ge=0, help="env steps between deterministic evaluations (0: start and end)")
    eval_episodes: int = setting(30, ge=1, le=10_000, help="randomized episodes per evaluation (fixed seeds; "
                                 "best_model.zip's fall-rate limit needs >= 30 to mean anything)")
    final_eval_episodes: int = setting(50, ge=1, le=10_000, help="randomized episodes for the final figures "
                                       "(seeds disjoint from the evaluations that select best_model.zip)")
    select_max_fall_rate: float = setting(0.02, ge=0, le=1, help="best_model.zip: the fastest (command task: "
                                          "best tracking) evaluated model whose fall rate (pooled over its confirmation) is at most this")
    confirm_episodes: int = setting(70, ge=0, le=9_000, help="an evaluation that would become best_model.zip if "
                                    "it held is first run on this many more seeded episodes, and the pooled figures "
                                    "decide (0: the evaluation's own; training.selection)")
    checkpoint_freq: int = setting(50_000, ge=0, help="env steps between checkpoints (0: only at the end)")
    visualize_freq: int = setting(50_000, ge=0, help="env steps between video clips (0: none)")


@dataclass
class PPOConfig:
    REMOVED = {"sde_sample_freq": Removed(-1, _GSDE),
               "ent_coef_decay_steps": Removed(0, "a decaying entropy bonus changed neither training falls nor speed "
                                                  "(CHANGELOG.md)"),
               "clip_range_vf": Removed(None, _LIB), "target_kl": Removed(None, _LIB),
               "normalize_advantage": Removed(True, _LIB),
               "bc_batch_size": Removed(256, "the auxiliary BC loss draws 256 demonstration rows per batch "
                                             "(training.handoff_ppo.BC_BATCH_SIZE); other sizes were never measured"),
               "freeze_encoder": Removed(False, "camera mode fine-tunes the whole network; a frozen encoder "
                                                "was never measured")}

    learning_rate: float = setting(3e-4, gt=0, le=1, help="Adam learning rate (actor and critic)")
    n_steps: int = setting(512, ge=2, le=1_000_000, help="env steps per env per rollout")
    batch_size: int = setting(512, ge=2, le=10_000_000, help="minibatch size")
    n_epochs: int = setting(5, ge=1, le=1000, help="passes over each rollout")
    gamma: float = setting(0.995, gt=0, le=1, help="discount (~200-step horizon: a gait that falls once per "
                                                  "episode must cost more than going faster earns)")
    gae_lambda: float = setting(0.95, ge=0, le=1, help="GAE lambda")
    clip_range: float = setting(0.2, gt=0, le=10, help="policy ratio clip")
    ent_coef: float = setting(0.0, ge=0, le=10, help="entropy bonus weight")
    vf_coef: float = setting(0.5, ge=0, le=100, help="value loss weight")
    max_grad_norm: float = setting(0.5, gt=0, le=1e6, help="gradient norm clip")
    normalize_reward: bool = setting(True, help="scale rewards by a running std of the return")
    # BC -> PPO hand-off (docs/training.md)
    init_log_std: float = setting(-3.6, ge=-20, le=2, help="log std set before PPO starts (BC collapses it); "
                                  "std 0.027: at 1M steps std 0.08 (-2.5) learns faster at first, then falls more")
    value_warmup_steps: int = setting(20_000, ge=0, help="env steps that train only the critic (from BC)")
    actor_ramp_steps: int = setting(50_000, ge=0, help="then the actor learning rate ramps to full over this")
    bc_coef: float = setting(20.0, ge=0, le=1e6, help="auxiliary BC loss weight at the start (from BC)")
    bc_decay_steps: int = setting(300_000, ge=1, help="... decaying linearly to 0 over this many env steps")


@dataclass
class OffPolicyConfig:
    """SAC / TD3 (`rl.algo`): SB3 defaults except where noted. The settings named "from BC (SAC)" shape
    SAC's start from a BC policy (`training.sac_prior`); the critics always have LayerNorm (RLPD)."""

    REMOVED = {**{name: Removed(default, _SAC) for name, default in (
        ("actor_learning_rate", None), ("cql_alpha", 0.0), ("critic_pretrain_updates", 0), ("warmup_noise", 0.0),
        ("bc_coef_final", 0.0), ("bc_target_mse", None), ("bc_target_ramp_steps", 0), ("bc_by_disagreement", 0.0),
        ("q_scale_at_release", False), ("act_by_q", False), ("actor_q", "min"), ("target_q_subset", 0),
        ("center_entropy", False), ("actor_delay", 1), ("ent_coef_tuning", True), ("n_critics", 2))},
        "utd": Removed(1, "two gradient steps per env step learned worse than one (CHANGELOG.md)"),
        "critic_layer_norm": Removed(True, "LayerNorm critics are always on (RLPD); without them SAC from BC "
                                           "unlearned the gait (CHANGELOG.md)")}

    learning_rate: float = setting(1e-3, gt=0, le=1, help="Adam learning rate (SB3's 3e-4 fits the critic too slowly "
                                   "for SAC from BC within 30k steps)")
    buffer_size: int = setting(300_000, ge=1, help="replay buffer transitions")
    learning_starts: int = setting(5_000, ge=0, help="random-action steps before learning (1,000 from BC)")
    critic_warmup_steps: int = setting(10_000, ge=0, help="from BC: steps before the warm-started actor moves")
    warm_start_updates: int = setting(1_000, ge=0, help="from BC: actor regression steps onto the BC actions")
    init_log_std: float = setting(-2.5, ge=-10, le=1, help="from BC (SAC): the warm start sets the actor's "
                                  "log std (before tanh) to this constant, so its first rollouts keep the BC gait")
    ent_coef_init: float = setting(0.01, gt=0, le=10, help="from BC (SAC): initial entropy coefficient, auto-tuned "
                                   "from there (SB3's default 1.0 from scratch)")
    bc_coef: float = setting(3.0, ge=0, le=1_000, help="from BC (SAC): weight of the actor's pull towards the BC "
                             "policy's actions beside the |Q|-normalized SAC loss (training.sac_prior; 0 = off)")
    bc_decay_steps: int = setting(50_000, ge=1, help="... falling linearly to 0 over this many env steps after the "
                                  "critic warm-up")
    td3_action_noise: float = setting(0.05, ge=0, le=1, help="TD3 Gaussian exploration noise std")
    demo_ratio: float = setting(0.0, ge=0, le=1, help="share of every batch drawn from the demonstrations "
                                                         "(RLPD: 0.5; 0 = online data only)")
    demo_ratio_decay_steps: int = setting(0, ge=0, help="the demonstrations' share falls linearly to 0 over this "
                                                         "many env steps (WSRL; 0: constant)")
    gamma: float = setting(0.99, gt=0, lt=1, help="discount of the critics' targets (SB3's; ppo.gamma is 0.995, a "
                           "~200-step horizon)")
    n_step: int = setting(3, ge=1, le=20, help="n-step returns in the critics' targets, online data and "
                          "demonstrations alike (1: SB3's one-step targets)")
    intervention: str = setting("none", choices=("none", "expert", "keyboard"),
                                help="expert: the trot takes over near a fall; keyboard: Enter in the viewer hands "
                                     "control to it and back; its steps join the demonstrations")
    intervention_penalty: float | None = setting(None, ge=0, le=1_000, help="expert: subtracted from the reward "
                                                 "of the learner's step that calls the expert (null: the env's "
                                                 "fall penalty, as the takeover stands in for a fall)")


# Settings added after a release, at the value that changes nothing (see pidog_env.config.HASH_NEUTRAL): left out
# of the defaults hash at that value, so results measured before them still count as today's defaults.
HASH_NEUTRAL: dict[tuple[str, ...], object] = {("distill",): {"history": 0, "steps": 160_000}}


@dataclass
class DistillConfig:
    """Teacher -> student (`training.distill`): after PPO trains a teacher that sees the episode's physics
    (`env.obs.episode_physics`), DAgger distils it into a deployable student with a history of frames."""

    history: int = setting(0, ge=0, le=50, help="past frames the student sees (0: no student; the run ships its "
                                               "PPO model)")
    steps: int = setting(160_000, ge=8, le=10**8, help="env steps collected over the 8 DAgger iterations (the "
                                                     "teacher drives the first, the student the others)")


@dataclass
class PipelineConfig:
    """Everything one run does; saved as config.json."""

    REMOVED = {"imitation": Removed("bc", _GAIL),
               "gail": Removed({"timesteps": 200_000, "demo_batch_size": 1024, "gen_replay_buffer_capacity": 4096,
                                "n_disc_updates_per_round": 4}, _GAIL)}

    experiment_name: str = setting(default_factory=lambda: time.strftime("bc_rl_%Y%m%d_%H%M%S"),
                                   help="folder under output_dir (letters, digits, '.', '_', '-')")
    output_dir: str = setting("outputs", help="where experiment folders are created")
    seed: int = setting(42, ge=0, le=2**31 - 1, help="seed of envs, networks and sampling")
    skip_bc: bool = setting(False, help="no demonstrations/imitation (RL from scratch or pretrained_model)")
    pretrained_model: str | None = setting(None, help="bc_pretrained_policy.pth of an earlier run to fine-tune")
    resume: bool = setting(False, help="continue experiment_name from its latest checkpoint")
    live: bool | None = setting(None, help="live windows (null: when a display is present)")
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    off_policy: OffPolicyConfig = field(default_factory=OffPolicyConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    @property
    def experiment_dir(self) -> Path:
        return Path(self.output_dir) / self.experiment_name

    def check(self) -> None:
        if not EXPERIMENT_NAME.match(self.experiment_name) or self.experiment_name in (".", ".."):
            raise ConfigError(f"experiment_name {self.experiment_name!r} must be a plain folder name (letters, "
                              "digits, '.', '_', '-'; no '/', no leading '.'), created inside output_dir")
        if not self.output_dir.strip():
            raise ConfigError("output_dir must not be empty")
        if self.pretrained_model and not self.skip_bc:
            raise ConfigError("pretrained_model needs skip_bc (it replaces the demonstrations and BC stages)")
        if self.skip_bc and not self.pretrained_model and self.rl.total_timesteps == 0 and not self.resume:
            raise ConfigError("nothing to do: skip_bc without pretrained_model and with rl.total_timesteps 0")
        if self.ppo.n_steps * self.rl.n_envs > MAX_ROLLOUT:
            raise ConfigError(f"a PPO rollout of ppo.n_steps x rl.n_envs = {self.ppo.n_steps * self.rl.n_envs:,} "
                              f"steps is more than {MAX_ROLLOUT:,} (it is held in memory)")
        if self.rl.algo != "ppo" and self.env.use_camera:
            raise ConfigError(f"rl.algo {self.rl.algo} supports vector observations only (not env.use_camera)")
        if self.distill.history:
            if not self.env.obs.episode_physics:
                raise ConfigError("distill.history needs a teacher: set env.obs.episode_physics=true (the PPO stage "
                                  "trains it, the student is distilled from it)")
            if self.rl.algo != "ppo" or self.rl.total_timesteps == 0:
                raise ConfigError("distill.history distils the PPO stage's model: it needs rl.algo ppo and "
                                  "rl.total_timesteps > 0")
            if self.env.obs.history > self.distill.history or self.env.use_camera:
                raise ConfigError("distill.history must be at least env.obs.history, on vector observations")
        if self.rl.eval_episodes + self.rl.confirm_episodes > SELECTION_SEEDS:
            raise ConfigError(f"rl.eval_episodes + rl.confirm_episodes = {self.rl.eval_episodes + self.rl.confirm_episodes:,} "
                              f"is more than the {SELECTION_SEEDS:,} seeds before the final evaluation's")

    def to_dict(self) -> dict:
        return asdict(self)
