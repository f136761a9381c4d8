"""GAIL on the demonstrations (imitation's GAIL, a PPO generator and a BasicRewardNet discriminator)."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.common import make_vec_env
from training.config import PipelineConfig
from training.demos import Demonstrations
from training.evaluate import FINAL_EVAL_SEED_BASE, evaluate_policy
from training.experiment import Experiment
from training.policies import policy_meta


def check_demo_size(cfg: PipelineConfig, transitions: int) -> None:
    """GAIL's discriminator draws `gail.demo_batch_size` demonstration rows per batch: fewer is an error."""
    from training.common import PipelineError
    if transitions < cfg.gail.demo_batch_size:
        raise PipelineError(f"GAIL needs at least gail.demo_batch_size = {cfg.gail.demo_batch_size} demonstration "
                            f"transitions, the demonstrations have {transitions}: record more episodes or lower "
                            "gail.demo_batch_size")


def stage_gail(cfg: PipelineConfig, exp: Experiment, demo: Demonstrations) -> dict[str, Any]:
    """Train a PPO generator against a discriminator for `cfg.gail.timesteps` steps -> final_model.zip."""
    check_demo_size(cfg, len(demo))
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data import types
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm

    from training.pipeline import build_model, figures, log
    g = cfg.gail
    venv = make_vec_env(cfg.env, cfg.rl.n_envs, cfg.seed, subprocess=False, for_rollouts=True)
    learner = build_model(cfg, venv, from_bc=False, tb_dir=exp / Experiment.TENSORBOARD)
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    # GAIL's discriminator needs (s, a, s', done); consecutive demo rows of one episode give s'.
    ends = np.cumsum(demo.episode_lengths)
    dones = np.zeros(len(demo), bool)
    dones[ends - 1] = True
    next_obs = np.concatenate([demo.obs[1:], demo.obs[-1:]])
    transitions = types.Transitions(obs=demo.obs, acts=demo.acts, infos=np.array([{}] * len(demo)),
                                    next_obs=next_obs, dones=dones)
    gail = GAIL(demonstrations=transitions, demo_batch_size=g.demo_batch_size,
                gen_replay_buffer_capacity=g.gen_replay_buffer_capacity,
                n_disc_updates_per_round=g.n_disc_updates_per_round, venv=venv, gen_algo=learner,
                reward_net=reward_net, allow_variable_horizon=True)
    log(f"GAIL: {g.timesteps} generator steps")
    try:
        gail.train(g.timesteps)
    finally:
        venv.close()
    meta = policy_meta(learner.policy, cfg.policy, cfg.env, stage="gail", algo="PPO")
    path = exp.save_model(learner, exp / Experiment.FINAL_MODEL, meta)
    ev = evaluate_policy(learner.policy, cfg.env, cfg.rl.final_eval_episodes, FINAL_EVAL_SEED_BASE, randomize=True)
    log(f"GAIL policy: {figures(ev)} -> {path}")
    return {k: v for k, v in ev.items() if k != "per_episode"}
