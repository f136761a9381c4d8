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
from pidog_env.config_tree import ConfigError, setting, validate

__all__ = ["BCConfig", "ConfigError", "DemoConfig", "GAILConfig", "OffPolicyConfig", "PipelineConfig",
           "PolicyConfig", "PPOConfig", "RLConfig", "validate"]

MAX_ROLLOUT = 2_000_000                 # PPO rollout buffer rows (n_steps x n_envs) held in memory
SELECTION_SEEDS = 10_000               # seeds for evaluations and confirmations before the final evaluation's
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class PolicyConfig:
    """Network shared by BC and PPO, so the BC state dict loads into PPO with strict=True."""

    net_arch: tuple[int, ...] = setting((128, 128), ge=1, le=4096,
                                        help="actor and critic hidden layers (separate nets)")
    activation: str = setting("tanh", choices=("tanh", "relu", "elu"), help="hidden-layer activation")
    features_dim: int = setting(128, ge=1, le=4096, help="CNN output size (camera mode)")
    use_sde: bool = setting(False, help="generalized state-dependent exploration (gSDE) instead of Gaussian "
                                        "action noise (PPO; BC builds the same policy)")

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
    source: str = setting("trot", help="expert to record: 'trot' or a saved model (.zip/.pth)")
    path: str | None = setting(None, help="use these saved demonstrations (.npz) instead of recording")
    n_episodes: int = setting(50, ge=1, le=100_000, help="demonstration episodes to record")
    noise: float = setting(0.02, ge=0, le=1, help="DART: std of the noise on executed expert actions "
                                                 "(0.03 already halves the trot's speed)")
    n_envs: int = setting(4, ge=1, le=64, help="envs recording in parallel")
    randomize: bool = setting(True, help="record under domain randomization")
    allow_pickle: bool = setting(False, help="allow loading pickled demonstrations / foreign SB3 zips")


@dataclass
class BCConfig:
    epochs: int = setting(200, ge=1, le=100_000, help="behavior cloning epochs")
    batch_size: int = setting(512, ge=1, le=1_000_000, help="BC minibatch size")
    learning_rate: float = setting(1e-3, gt=0, le=1, help="BC Adam learning rate")
    ent_weight: float = setting(1e-3, ge=0, help="imitation's BC entropy bonus weight")
    l2_weight: float = setting(0.0, ge=0, help="imitation's BC L2 weight penalty")
    val_fraction: float = setting(0.1, ge=0, lt=1, help="held-out episodes for validation (0 disables)")
    eval_episodes: int = setting(20, ge=1, le=10_000, help="randomized episodes to evaluate the BC policy")


@dataclass
class GAILConfig:
    timesteps: int = setting(200_000, ge=1, help="GAIL generator env steps")
    demo_batch_size: int = setting(1024, ge=1, help="expert transitions per discriminator batch")
    gen_replay_buffer_capacity: int = setting(4096, ge=1, help="generator samples kept for the discriminator")
    n_disc_updates_per_round: int = setting(4, ge=1, help="discriminator updates per generator round")


@dataclass
class RLConfig:
    """What any RL algorithm does around its updates: budget, evaluation, checkpoints, videos."""

    algo: str = setting("ppo", choices=("ppo", "sac", "td3"), help="RL algorithm after imitation")
    total_timesteps: int = setting(500_000, ge=0, le=10**10, help="RL env steps (0 skips RL)")
    n_envs: int = setting(4, ge=1, le=256, help="parallel training envs (PPO)")
    vec_env: str = setting("batched", choices=("batched", "subproc", "dummy"),
                           help="batched: one block of envs per core, the first stepped by the training process, "
                                "shared-memory observations (training/vec_env.py); subproc: SB3's SubprocVecEnv, "
                                "one process per env; dummy: all in the training process")
    eval_freq: int = setting(25_000, ge=0, help="env steps between deterministic evaluations (0: start and end)")
    eval_episodes: int = setting(30, ge=1, le=10_000, help="randomized episodes per evaluation (fixed seeds; "
                                 "best_model.zip's fall-rate limit needs >= 30 to mean anything)")
    final_eval_episodes: int = setting(50, ge=1, le=10_000, help="randomized episodes for the final figures "
                                       "(seeds disjoint from the evaluations that select best_model.zip)")
    select_max_fall_rate: float = setting(0.02, ge=0, le=1, help="best_model.zip: the fastest (command task: "
                                          "best tracking) evaluated model whose evaluation fall rate is at most this")
    confirm_episodes: int = setting(70, ge=0, le=9_000, help="an evaluation that would become best_model.zip is "
                                    "first run on this many more seeded episodes, and the pooled figures decide "
                                    "(0: the evaluation's own; training.selection)")
    curriculum: bool = setting(False, help="widen the training randomization as evaluations stay safe "
                               "(pidog_env.curriculum; evaluations use the configured ranges)")
    curriculum_start: float = setting(0.5, ge=0, le=3, help="rl.curriculum: first level (1 = the configured ranges)")
    curriculum_step: float = setting(0.1, gt=0, le=3, help="rl.curriculum: level added after each safe evaluation")
    curriculum_max: float = setting(1.5, ge=0, le=3, help="rl.curriculum: highest level (> 1 widens beyond the ranges)")
    curriculum_max_fall_rate: float = setting(0.05, ge=0, le=1, help="rl.curriculum: an evaluation with at most "
                                              "this fall rate raises the level")
    checkpoint_freq: int = setting(50_000, ge=0, help="env steps between checkpoints (0: only at the end)")
    visualize_freq: int = setting(50_000, ge=0, help="env steps between video clips (0: none)")
    video_fps: int = setting(25, choices=(5, 10, 25, 50), help="clip frame rate (clips play in real time)")


@dataclass
class PPOConfig:
    learning_rate: float = setting(3e-4, gt=0, le=1, help="Adam learning rate (actor and critic)")
    n_steps: int = setting(512, ge=2, le=1_000_000, help="env steps per env per rollout")
    batch_size: int = setting(512, ge=2, le=10_000_000, help="minibatch size")
    n_epochs: int = setting(5, ge=1, le=1000, help="passes over each rollout")
    gamma: float = setting(0.995, gt=0, le=1, help="discount (~200-step horizon: a gait that falls once per "
                                                  "episode must cost more than going faster earns)")
    gae_lambda: float = setting(0.95, ge=0, le=1, help="GAE lambda")
    clip_range: float = setting(0.2, gt=0, le=10, help="policy ratio clip")
    clip_range_vf: float | None = setting(None, gt=0, le=1e6, help="value clip around the old values (null: off)")
    target_kl: float | None = setting(None, gt=0, le=100, help="stop an update's epochs past 1.5x this KL")
    ent_coef: float = setting(0.0, ge=0, le=10, help="entropy bonus weight")
    ent_coef_decay_steps: int = setting(0, ge=0, le=10**10, help="the entropy bonus decays linearly to 0 over "
                                        "this many env steps (0: constant)")
    vf_coef: float = setting(0.5, ge=0, le=100, help="value loss weight")
    max_grad_norm: float = setting(0.5, gt=0, le=1e6, help="gradient norm clip")
    normalize_advantage: bool = setting(True, help="normalize advantages per minibatch")
    normalize_reward: bool = setting(True, help="scale rewards by a running std of the return")
    # BC -> PPO hand-off (see README "BC -> PPO hand-off")
    init_log_std: float = setting(-3.6, ge=-20, le=2, help="log std set before PPO starts (BC collapses it); "
                                  "std 0.027: at 1M steps std 0.08 (-2.5) learns faster at first, then falls more")
    value_warmup_steps: int = setting(20_000, ge=0, help="env steps that train only the critic (from BC)")
    actor_ramp_steps: int = setting(50_000, ge=0, help="then the actor learning rate ramps to full over this")
    bc_coef: float = setting(20.0, ge=0, le=1e6, help="auxiliary BC loss weight at the start (from BC)")
    bc_decay_steps: int = setting(300_000, ge=1, help="... decaying linearly to 0 over this many env steps")
    bc_batch_size: int = setting(256, ge=1, le=1_000_000, help="demonstration rows per auxiliary BC batch")
    freeze_encoder: bool = setting(False, help="camera mode: keep the BC image encoder fixed")
    sde_sample_freq: int = setting(-1, ge=-1, le=1_000_000, help="policy.use_sde: new exploration noise every "
                                                                  "this many steps (-1: once per rollout)")


@dataclass
class OffPolicyConfig:
    """SAC / TD3 (`rl.algo`): SB3 defaults except where noted."""

    learning_rate: float = setting(1e-3, gt=0, le=1, help="Adam learning rate (SB3's 3e-4 fits the critic too slowly "
                                   "for SAC from BC within 30k steps)")
    actor_learning_rate: float | None = setting(None, gt=0, le=1, help="from BC (SAC): the actor's own Adam "
                                                "learning rate, below the critics' for two timescales (null: "
                                                "learning_rate)")
    cql_alpha: float = setting(0.0, ge=0, le=100, help="from BC (SAC): a conservative critic (CQL with the actor as "
                               "the proposal): each critic loss adds cql_alpha x (Q(s, actor's sample) - Q(s, "
                               "buffer action)), so actions the data does not hold are valued lower (0: off)")
    buffer_size: int = setting(300_000, ge=1, help="replay buffer transitions")
    learning_starts: int = setting(5_000, ge=0, help="random-action steps before learning (1,000 from BC)")
    critic_warmup_steps: int = setting(10_000, ge=0, help="from BC: steps before the warm-started actor moves")
    critic_pretrain_updates: int = setting(0, ge=0, le=1_000_000, help="from BC (SAC): critic updates on the "
                                           "demonstrations alone before the first env step (offline; costs no env "
                                           "steps; needs demo_ratio > 0)")
    warmup_noise: float = setting(0.0, ge=0, le=1, help="from BC: std of Gaussian noise added to the executed actions "
                                  "during the critic warm-up (the actor is fixed), so the critics see the gait's "
                                  "neighbourhood, falls included, before the actor moves (0: off)")
    warm_start_updates: int = setting(1_000, ge=0, help="from BC: actor regression steps onto the BC actions")
    init_log_std: float = setting(-2.5, ge=-10, le=1, help="from BC (SAC): the warm start sets the actor's "
                                  "log std (before tanh) to this constant, so its first rollouts keep the BC gait")
    ent_coef_init: float = setting(0.01, gt=0, le=10, help="from BC (SAC): initial entropy coefficient, auto-tuned "
                                   "from there (SB3's default 1.0 from scratch)")
    ent_coef_tuning: bool = setting(True, help="from BC (SAC): auto-tune the entropy coefficient towards the "
                                    "target entropy (SB3's 'auto'); false: fixed at ent_coef_init, and the actor's "
                                    "exploration noise may shrink as the critic asks")
    bc_coef: float = setting(3.0, ge=0, le=1_000, help="from BC (SAC): weight of the actor's pull towards the BC "
                             "policy's actions beside the |Q|-normalized SAC loss (training.sac_prior; 0 = off)")
    bc_decay_steps: int = setting(50_000, ge=1, help="... falling linearly to 0 over this many env steps after the "
                                  "critic warm-up")
    bc_coef_final: float = setting(0.0, ge=0, le=1_000, help="from BC (SAC): the weight the decay ends at and "
                                   "keeps, or with bc_target_mse the tuned weight's floor (at most bc_coef; 0: the "
                                   "prior may let go entirely)")
    bc_target_mse: float | None = setting(None, gt=0, le=4, help="from BC (SAC): instead of the decay, tune the "
                                          "prior's weight (starting at bc_coef) so the actor's mean squared distance "
                                          "from the BC actions stays at this value (a constraint; null: the decay)")
    bc_target_ramp_steps: int = setting(0, ge=0, le=1_000_000, help="from BC (SAC), with bc_target_mse: the held "
                                        "distance grows linearly from 0 at the release to bc_target_mse over this "
                                        "many env steps (0: all of it at once)")
    bc_by_disagreement: float = setting(0.0, ge=0, le=1, help="from BC (SAC): share the prior's pull out over the "
                                        "batch's states by the critics' disagreement on the actor's action: weight "
                                        "(1 - beta) + beta * sigma / mean sigma, so it holds BC where the Q networks "
                                        "disagree (beta; 0: the same pull on every state)")
    q_scale_at_release: bool = setting(False, help="from BC (SAC): divide the actor's SAC loss by the critics' "
                                       "mean |Q| averaged over the warm-up and held from the release, not each "
                                       "batch's (whose fall, as the entropy coefficient rises, loosens the prior)")
    act_by_q: bool = setting(False, help="from BC (SAC): after the critic warm-up, execute the actor's sample or the "
                             "BC policy's action, whichever the critics value higher (IBRL; needs bc_coef > 0); the "
                             "exported policy is the actor alone")
    critic_layer_norm: bool = setting(True, help="LayerNorm after every hidden layer of the Q networks (RLPD)")
    n_critics: int = setting(2, ge=2, le=10, help="Q networks (SB3's n_critics); the critics' target and the actor "
                             "take the minimum over all of them (unless actor_q / target_q_subset say otherwise), "
                             "so more are more pessimistic about untried actions")
    actor_q: str = setting("min", choices=("min", "mean"), help="from BC (SAC): what the actor climbs: the minimum "
                           "over the Q networks (SB3's) or their mean (REDQ's; a smoother gradient)")
    target_q_subset: int = setting(0, ge=0, le=10, help="from BC (SAC): the critics' target takes the minimum over "
                                   "this many target networks drawn at random each update (REDQ's 2; 0: all "
                                   "n_critics)")
    center_entropy: bool = setting(False, help="from BC (SAC): the critics' entropy term counted from the target "
                                   "entropy, so a near-deterministic actor's log-probabilities do not make every "
                                   "step cost and a fall look cheap (training.sac_prior)")
    td3_action_noise: float = setting(0.05, ge=0, le=1, help="TD3 Gaussian exploration noise std")
    demo_ratio: float = setting(0.0, ge=0, le=1, help="share of every batch drawn from the demonstrations "
                                                         "(RLPD: 0.5; 0 = online data only)")
    demo_ratio_decay_steps: int = setting(0, ge=0, help="the demonstrations' share falls linearly to 0 over this "
                                                         "many env steps (0: constant)")
    gamma: float = setting(0.99, gt=0, lt=1, help="discount of the critics' targets (SB3's; ppo.gamma is 0.995, a "
                           "~200-step horizon)")
    utd: int = setting(1, ge=1, le=64, help="update-to-data ratio: gradient steps per env step")
    actor_delay: int = setting(1, ge=1, le=64, help="SAC from BC: the actor (and the prior's multiplier) learns on "
                               "every this-many-th gradient step, the critics on all (REDQ/DroQ: utd > 1 for the "
                               "critics, one actor step per env step)")
    n_step: int = setting(3, ge=1, le=20, help="n-step returns in the critics' targets, online data and "
                          "demonstrations alike (1: SB3's one-step targets)")
    intervention: str = setting("none", choices=("none", "expert", "keyboard"),
                                help="expert: the trot takes over near a fall; keyboard: Enter in the viewer hands "
                                     "control to it and back; its steps join the demonstrations")
    intervention_penalty: float | None = setting(None, ge=0, le=1_000, help="expert: subtracted from the reward "
                                                 "of the learner's step that calls the expert (null: the env's "
                                                 "fall penalty, as the takeover stands in for a fall)")


@dataclass
class PipelineConfig:
    """Everything one run does; saved as config.json."""

    experiment_name: str = setting(default_factory=lambda: time.strftime("bc_rl_%Y%m%d_%H%M%S"),
                                   help="folder under output_dir (letters, digits, '.', '_', '-')")
    output_dir: str = setting("outputs", help="where experiment folders are created")
    seed: int = setting(42, ge=0, le=2**31 - 1, help="seed of envs, networks and sampling")
    skip_bc: bool = setting(False, help="no demonstrations/imitation (RL from scratch or pretrained_model)")
    pretrained_model: str | None = setting(None, help="bc_pretrained_policy.pth of an earlier run to fine-tune")
    imitation: str = setting("bc", choices=("bc", "gail"), help="imitation algorithm on the demonstrations")
    resume: bool = setting(False, help="continue experiment_name from its latest checkpoint")
    live: bool | None = setting(None, help="live windows (null: when a display is present)")
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    gail: GAILConfig = field(default_factory=GAILConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    off_policy: OffPolicyConfig = field(default_factory=OffPolicyConfig)

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
        if self.imitation == "gail" and self.env.use_camera:
            raise ConfigError("GAIL here supports vector observations only (not env.use_camera)")
        if self.rl.algo != "ppo" and self.env.use_camera:
            raise ConfigError(f"rl.algo {self.rl.algo} supports vector observations only (not env.use_camera)")
        if self.policy.use_sde and (self.rl.algo != "ppo" or self.imitation == "gail"):
            raise ConfigError("policy.use_sde works with BC and rl.algo ppo only")
        if self.env.obs.critic_state and (self.rl.algo != "ppo" or self.imitation == "gail"):
            raise ConfigError("env.obs.critic_state (the asymmetric actor-critic) works with BC and rl.algo ppo only")
        if self.rl.curriculum and self.rl.curriculum_max < self.rl.curriculum_start:
            raise ConfigError(f"rl.curriculum_max {self.rl.curriculum_max} is below rl.curriculum_start "
                              f"{self.rl.curriculum_start}")
        if self.rl.curriculum and (self.rl.algo != "ppo" or not self.env.randomization.enabled):
            raise ConfigError("rl.curriculum needs rl.algo ppo and env.randomization.enabled")
        if self.rl.eval_episodes + self.rl.confirm_episodes > SELECTION_SEEDS:
            raise ConfigError(f"rl.eval_episodes + rl.confirm_episodes = {self.rl.eval_episodes + self.rl.confirm_episodes:,} "
                              f"is more than the {SELECTION_SEEDS:,} seeds before the final evaluation's")
        sac_from_scratch = self.rl.algo == "sac" and self.skip_bc and not self.pretrained_model
        for name in ("center_entropy", "ent_coef_tuning", "bc_target_mse", "bc_coef_final", "actor_delay",
                     "critic_pretrain_updates", "q_scale_at_release", "act_by_q", "bc_target_ramp_steps",
                     "bc_by_disagreement", "actor_q", "target_q_subset", "actor_learning_rate", "cql_alpha"):
            changed = getattr(self.off_policy, name) != getattr(OffPolicyConfig, name)
            if changed and (self.rl.algo == "td3" or sac_from_scratch):
                raise ConfigError(f"off_policy.{name} applies to SAC from a BC policy (rl.algo sac, with the BC "
                                  "stage or pretrained_model)")
        o = self.off_policy
        if o.warmup_noise > 0 and self.rl.algo != "ppo" and (self.skip_bc and not self.pretrained_model
                                                            or o.critic_warmup_steps == 0):
            raise ConfigError("off_policy.warmup_noise applies to the critic warm-up of SAC/TD3 from a BC policy "
                              "(the BC stage or pretrained_model, and off_policy.critic_warmup_steps > 0)")
        if o.critic_pretrain_updates and self.rl.algo == "sac" and o.demo_ratio == 0:
            raise ConfigError("off_policy.critic_pretrain_updates trains the critics on the demonstrations in the "
                              "replay buffer: it needs off_policy.demo_ratio > 0")
        if o.act_by_q and o.bc_coef == 0:
            raise ConfigError("off_policy.act_by_q compares the actor's actions with the BC policy's: it needs "
                              "off_policy.bc_coef > 0")
        if o.bc_by_disagreement and o.bc_coef == 0:
            raise ConfigError("off_policy.bc_by_disagreement shares out the pull towards the BC policy: it needs "
                              "off_policy.bc_coef > 0")
        if o.target_q_subset > o.n_critics:
            raise ConfigError(f"off_policy.target_q_subset {o.target_q_subset} is more than off_policy.n_critics "
                              f"{o.n_critics}")
        if o.bc_coef_final > o.bc_coef:
            raise ConfigError(f"off_policy.bc_coef_final {o.bc_coef_final:g} is above off_policy.bc_coef {o.bc_coef:g} "
                              "(the decay ends at it)")
        if o.bc_target_mse is not None and o.bc_coef == 0:
            raise ConfigError("off_policy.bc_target_mse tunes the prior's weight from off_policy.bc_coef, which is 0 "
                              "(no prior)")
        if o.bc_target_ramp_steps and o.bc_target_mse is None:
            raise ConfigError("off_policy.bc_target_ramp_steps ramps up off_policy.bc_target_mse, which is not set")
        if self.rl.algo != "ppo" and self.imitation == "gail" and not self.skip_bc:
            raise ConfigError("GAIL trains its own PPO generator; combine it with rl.algo ppo")

    def to_dict(self) -> dict:
        return asdict(self)
