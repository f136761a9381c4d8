"""One policy builder for BC and PPO, and safe (pickle-free) saving and loading of policies.

* `bc_pretrained_policy.pth`: `{"format", "state_dict", "meta"}`, loaded with `torch.load(weights_only=True)`.
* SB3 `.zip` files written by this project carry `pidog_meta.json`; they are read from the zip's
  `policy.pth` (weights only) and rebuilt from that metadata, never unpickled. Foreign zips need
  `allow_pickle=True` (SB3's own loader unpickles parts of them) and warn.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticPolicy, MultiInputActorCriticPolicy

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from pidog_env.env import action_space, observation_space
from training.common import PipelineError, describe_space, make_env, versions
from training.config import PolicyConfig

POLICY_FORMAT = "pidog-policy-v1"
META_NAME = "pidog_meta.json"
CNN_FEATURES = 128            # camera mode: the image encoder's output size (SB3's NatureCNN, resized)


def policy_class(obs_space: gym.Space, env_cfg: EnvConfig | None = None) -> type[ActorCriticPolicy]:
    """The SB3 policy class for this observation (PPO gets the class itself, BC builds it)."""
    if isinstance(obs_space, gym.spaces.Dict):
        return MultiInputActorCriticPolicy
    return ActorCriticPolicy


def policy_class_name(obs_space: gym.Space, env_cfg: EnvConfig | None = None) -> str:
    return {MultiInputActorCriticPolicy: "MultiInputPolicy", ActorCriticPolicy: "MlpPolicy"}[policy_class(obs_space, env_cfg)]


def policy_kwargs(cfg: PolicyConfig, obs_space: gym.Space, env_cfg: EnvConfig | None = None) -> dict[str, Any]:
    """The exact kwargs PPO gets and BC's policy is built with."""
    kwargs = cfg.to_kwargs()
    if isinstance(obs_space, gym.spaces.Dict):
        kwargs["features_extractor_kwargs"] = {"cnn_output_dim": CNN_FEATURES}
    return kwargs


def make_policy(obs_space: gym.Space, act_space: gym.Space, cfg: PolicyConfig, lr: float = 3e-4,
                env_cfg: EnvConfig | None = None) -> ActorCriticPolicy:
    cls = policy_class(obs_space, env_cfg)
    return cls(obs_space, act_space, lr_schedule=lambda _: lr, **policy_kwargs(cfg, obs_space, env_cfg))


def policy_meta(policy: ActorCriticPolicy, policy_cfg: PolicyConfig, env_cfg: EnvConfig,
                **extra: Any) -> dict[str, Any]:
    from dataclasses import asdict
    return {"policy_type": policy_class_name(policy.observation_space, env_cfg), "policy": asdict(policy_cfg),
            "env_config": env_cfg.to_dict(), "env_config_hash": env_cfg.hash(),
            "observation_space": describe_space(policy.observation_space),
            "action_space": describe_space(policy.action_space), "versions": versions(), **extra}


def save_policy(path: Path, policy: ActorCriticPolicy, meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    torch.save({"format": POLICY_FORMAT, "state_dict": state, "meta": json.dumps(meta, default=str)}, path)


def load_policy_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of a `.pth` written by `save_policy` (weights-only load, no pickle)."""
    if not path.is_file():
        raise PipelineError(f"policy file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign/pickled files
        raise PipelineError(f"{path} is not a policy saved by this project ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != POLICY_FORMAT:
        raise PipelineError(f"{path} is not a policy saved by this project (format {POLICY_FORMAT} expected)")
    return blob["state_dict"], json.loads(blob["meta"])


def rebuild_policy(meta: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> tuple[ActorCriticPolicy, EnvConfig]:
    """Policy object from metadata + weights; the env config is rebuilt to recover the spaces."""
    env_cfg = env_config_of(meta)
    pol_cfg = config_tree.from_dict(PolicyConfig, meta["policy"])
    policy = make_policy(observation_space(env_cfg), action_space(env_cfg), pol_cfg, env_cfg=env_cfg)
    try:
        policy.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise PipelineError(f"policy weights do not fit the recorded architecture: {str(exc).splitlines()[0]}") from None
    policy.set_training_mode(False)
    return policy, env_cfg


def rebuild_off_policy(meta: dict[str, Any], state_dict: dict[str, torch.Tensor]):
    """SAC/TD3 policy from metadata + weights (train_rl.py builds them with net_arch = PolicyConfig's)."""
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.vec_env import DummyVecEnv

    from training.sac_prior import has_layer_norm, layer_norm_critics
    env_cfg = env_config_of(meta)
    arch = list(meta["policy"]["net_arch"])
    venv = DummyVecEnv([lambda: make_env(env_cfg)])
    algo = {"SAC": SAC, "TD3": TD3}[meta["algo"]]
    try:
        n_critics = len({k.split(".")[1] for k in state_dict if k.startswith("critic.qf")}) or 2
        model = algo("MlpPolicy", venv, policy_kwargs={"net_arch": arch, "n_critics": n_critics}, buffer_size=1,
                     learning_starts=0, device="cpu")
        if has_layer_norm(state_dict):
            layer_norm_critics(model.policy)
        try:
            model.policy.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise PipelineError(f"policy weights do not fit the recorded architecture: {str(exc).splitlines()[0]}") from None
    finally:
        venv.close()
    model.policy.set_training_mode(False)
    return model.policy, env_cfg


def env_config_of(meta: dict[str, Any]) -> EnvConfig:
    """The env config a policy was trained on; a config this version cannot rebuild is a one-line error."""
    if "action_scale_deg" not in meta.get("env_config", {}):
        raise PipelineError("the policy was trained with absolute joint-target actions; actions are offsets from "
                            "the stand pose since this version (env config hash changed): retrain it")
    try:
        return EnvConfig.from_dict(meta["env_config"])
    except (config_tree.ConfigError, KeyError) as exc:
        raise PipelineError(f"the policy was saved for an env config this version cannot rebuild ({exc}); "
                            "retrain it with this version") from None


def read_zip_meta(zip_path: Path) -> dict[str, Any]:
    """This project's metadata inside an SB3 zip ({} for foreign zips)."""
    with zipfile.ZipFile(zip_path) as zf:
        return json.loads(zf.read(META_NAME)) if META_NAME in zf.namelist() else {}


def add_meta_to_zip(zip_path: Path, meta: dict[str, Any]) -> None:
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr(META_NAME, json.dumps(meta, default=str))


def load_policy(path: str | Path, allow_pickle: bool = False) -> tuple[ActorCriticPolicy, dict[str, Any]]:
    """Load a BC `.pth` or an SB3 `.zip` as a policy plus its metadata (rebuilt env config included)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"model not found: {path}")
    if path.suffix == ".pth":
        state, meta = load_policy_file(path)
        policy, env_cfg = rebuild_policy(meta, state)
        return policy, {**meta, "env_config_obj": env_cfg}
    if path.suffix != ".zip" or not zipfile.is_zipfile(path):
        raise PipelineError(f"{path}: expected a .pth policy or an SB3 .zip model")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if META_NAME in names and "policy.pth" in names:
            meta = json.loads(zf.read(META_NAME))
            state = torch.load(io.BytesIO(zf.read("policy.pth")), map_location="cpu", weights_only=True)
            if meta.get("algo") in ("SAC", "TD3"):
                policy, env_cfg = rebuild_off_policy(meta, state)
            else:
                policy, env_cfg = rebuild_policy(meta, state)
            return policy, {**meta, "env_config_obj": env_cfg}
    if not allow_pickle:
        raise PipelineError(f"{path} was not written by this project; loading it unpickles code. "
                            "Pass --allow-pickle if you trust it")
    warnings.warn(f"loading {path} with SB3's loader, which unpickles parts of the file (--allow-pickle)")
    from stable_baselines3 import PPO
    model = PPO.load(path, device="cpu")
    meta = {"policy_type": policy_class_name(model.observation_space),
            "observation_space": describe_space(model.observation_space),
            "action_space": describe_space(model.action_space)}
    return model.policy, meta
