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
from training.common import PipelineError, check_finite, describe_space, make_env, versions
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
    """(state_dict, meta) of a `.pth` written by `save_policy` (weights-only load, no pickle), checked
    (`checked_file`)."""
    if not path.exists():
        raise PipelineError(f"policy file not found: {path}")
    if not path.is_file():
        raise PipelineError(f"policy file {path} is a folder, not a file")
    if _is_model_zip(path):
        raise PipelineError(f"{path} is an SB3 model zip; a BC policy .pth (bc_pretrained_policy.pth) is expected here")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign/pickled files
        raise PipelineError(f"{path} is not a policy saved by this project ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != POLICY_FORMAT:
        raise PipelineError(f"{path} is not a policy saved by this project (format {POLICY_FORMAT} expected)")
    return checked_file(path, blob.get("state_dict"), blob.get("meta"))


def _is_model_zip(path: Path) -> bool:
    """An SB3 model zip (torch's own .pth files are zips too, without these members)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return bool({META_NAME, "policy.pth"} & set(zf.namelist()))
    except (zipfile.BadZipFile, OSError):
        return False


def checked_file(path: Path, state: Any, meta: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) read from `path`: a dict of tensors with finite values and a JSON object, or a
    one-line PipelineError naming the file."""
    if isinstance(meta, (str, bytes)):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = None
    if not isinstance(meta, dict):
        raise PipelineError(f"{path}: its metadata is not a JSON object (not a policy saved by this project)")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineError(f"{path}: its weights are not a state dict of tensors (not a policy saved by this project)")
    check_weights(path, state)
    return state, meta


def check_weights(source: str | Path, state: dict[str, torch.Tensor]) -> None:
    """A one-line PipelineError naming the first weight that holds NaN or inf (a diverged or damaged policy)."""
    for name, tensor in state.items():
        if tensor.is_floating_point():
            check_finite(f"{source}: weight {name}", tensor.detach().cpu().float().numpy())


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """A strict state-dict load; weights that do not fit name the first mismatch in one line."""
    own = module.state_dict()
    spaces = ""
    if hasattr(module, "observation_space") and hasattr(module, "action_space"):
        spaces = (f" (observation {_shape(module.observation_space)}, action {_shape(module.action_space)})")
    for name, want in own.items():
        if name in state and tuple(state[name].shape) != tuple(want.shape):
            raise PipelineError(f"{source}: policy weights do not fit the recorded architecture{spaces}: {name} has "
                                f"shape {tuple(state[name].shape)}, {tuple(want.shape)} expected")
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    if missing or unexpected:
        what = [f"{len(missing)} missing, e.g. {missing[0]}"] if missing else []
        what += [f"{len(unexpected)} unexpected, e.g. {unexpected[0]}"] if unexpected else []
        raise PipelineError(f"{source}: policy weights do not fit the recorded architecture{spaces}: "
                            f"{'; '.join(what)}")
    module.load_state_dict(state, strict=True)


def _shape(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{k}={_shape(v)}" for k, v in space.spaces.items()) + ")"
    return f"Box{tuple(space.shape)}"


def rebuild_policy(meta: dict[str, Any], state_dict: dict[str, torch.Tensor],
                   source: str | Path = "policy") -> tuple[ActorCriticPolicy, EnvConfig]:
    """Policy object from metadata + weights; the env config is rebuilt to recover the spaces."""
    env_cfg = env_config_of(meta)
    try:
        pol_cfg = config_tree.from_dict(PolicyConfig, meta["policy"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"{source}: its metadata has no usable policy settings ({exc})") from None
    policy = make_policy(observation_space(env_cfg), action_space(env_cfg), pol_cfg, env_cfg=env_cfg)
    load_weights(policy, state_dict, source)
    policy.set_training_mode(False)
    return policy, env_cfg


# ---------------------------------------------------------------- SAC/TD3 critics (RLPD)
def layer_norm_critics(policy) -> None:
    """Rebuild the Q networks of an SB3 SAC/TD3 policy (and their targets) with a LayerNorm after every
    hidden Linear layer; fresh weights, a fresh critic optimizer. Same architecture otherwise."""
    for critic in (policy.critic, policy.critic_target):
        for i, old in enumerate(critic.q_networks):
            layers: list[torch.nn.Module] = []
            linears = [m for m in old if isinstance(m, torch.nn.Linear)]
            act = next((type(m) for m in old if not isinstance(m, torch.nn.Linear)), torch.nn.ReLU)
            for lin in linears[:-1]:
                layers += [torch.nn.Linear(lin.in_features, lin.out_features), torch.nn.LayerNorm(lin.out_features),
                           act()]
            layers.append(torch.nn.Linear(linears[-1].in_features, linears[-1].out_features))
            new = torch.nn.Sequential(*layers)
            critic.add_module(f"qf{i}", new)
            critic.q_networks[i] = new
    policy.critic_target.load_state_dict(policy.critic.state_dict())
    lr = policy.critic.optimizer.param_groups[0]["lr"]
    policy.critic.optimizer = policy.optimizer_class(policy.critic.parameters(), lr=lr, **policy.optimizer_kwargs)


def has_layer_norm(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether saved SAC/TD3 weights come from LayerNorm critics (their q networks have 1-D weights)."""
    return any(k.startswith("critic.qf") and k.endswith(".weight") and v.dim() == 1 for k, v in state_dict.items())


def rebuild_off_policy(meta: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str | Path = "policy"):
    """SAC/TD3 policy from metadata + weights (train_rl.py builds them with net_arch = PolicyConfig's)."""
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.vec_env import DummyVecEnv
    env_cfg = env_config_of(meta)
    try:
        arch = [int(n) for n in meta["policy"]["net_arch"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"{source}: its metadata has no usable policy.net_arch ({exc})") from None
    venv = DummyVecEnv([lambda: make_env(env_cfg)])
    algo = {"SAC": SAC, "TD3": TD3}[meta["algo"]]
    try:
        n_critics = len({k.split(".")[1] for k in state_dict if k.startswith("critic.qf")}) or 2
        model = algo("MlpPolicy", venv, policy_kwargs={"net_arch": arch, "n_critics": n_critics}, buffer_size=1,
                     learning_starts=0, device="cpu")
        if has_layer_norm(state_dict):
            layer_norm_critics(model.policy)
        load_weights(model.policy, state_dict, source)
    finally:
        venv.close()
    model.policy.set_training_mode(False)
    return model.policy, env_cfg


def env_config_of(meta: dict[str, Any]) -> EnvConfig:
    """The env config a policy was trained on; a config this version cannot rebuild is a one-line error."""
    if not isinstance(meta.get("env_config"), dict) or "action_scale_deg" not in meta["env_config"]:
        raise PipelineError("the policy was trained with absolute joint-target actions; actions are offsets from "
                            "the stand pose since this version (env config hash changed): retrain it")
    try:
        return EnvConfig.from_dict(meta["env_config"])
    except (config_tree.ConfigError, KeyError, TypeError, AttributeError) as exc:
        raise PipelineError(f"the policy was saved for an env config this version cannot rebuild ({exc}); "
                            "retrain it with this version") from None


def read_zip_meta(zip_path: Path) -> dict[str, Any]:
    """This project's metadata inside an SB3 zip ({} for foreign zips)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            return json.loads(zf.read(META_NAME)) if META_NAME in zf.namelist() else {}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PipelineError(f"{zip_path} is not a readable model zip ({type(exc).__name__})") from None


def add_meta_to_zip(zip_path: Path, meta: dict[str, Any]) -> None:
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr(META_NAME, json.dumps(meta, default=str))


def load_policy(path: str | Path, allow_pickle: bool = False) -> tuple[ActorCriticPolicy, dict[str, Any]]:
    """Load a BC `.pth` or an SB3 `.zip` as a policy plus its metadata (rebuilt env config included)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"model not found: {path}")
    if not path.is_file():
        raise PipelineError(f"model {path} is a folder, not a file")
    if path.suffix == ".pth":
        state, meta = load_policy_file(path)
        policy, env_cfg = rebuild_policy(meta, state, path)
        return policy, {**meta, "env_config_obj": env_cfg}
    if path.suffix != ".zip" or not zipfile.is_zipfile(path):
        raise PipelineError(f"{path}: expected a .pth policy or an SB3 .zip model")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            ours = META_NAME in names and "policy.pth" in names
            if ours:
                meta_text = zf.read(META_NAME)
                state = torch.load(io.BytesIO(zf.read("policy.pth")), map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged zip or member: zipfile, zlib, torch and pickle errors
        raise PipelineError(f"{path} is not a readable model zip ({type(exc).__name__})") from None
    if ours:
        state, meta = checked_file(path, state, meta_text)
        if meta.get("algo") in ("SAC", "TD3"):
            policy, env_cfg = rebuild_off_policy(meta, state, path)
        else:
            policy, env_cfg = rebuild_policy(meta, state, path)
        return policy, {**meta, "env_config_obj": env_cfg}
    if not allow_pickle:
        raise PipelineError(f"{path} was not written by this project; loading it unpickles code. "
                            "Pass --allow-pickle if you trust it")
    warnings.warn(f"loading {path} with SB3's loader, which unpickles parts of the file (--allow-pickle)")
    from stable_baselines3 import PPO
    try:
        model = PPO.load(path, device="cpu")
    except Exception as exc:  # whatever the foreign file holds
        raise PipelineError(f"{path} could not be loaded as an SB3 PPO model ({type(exc).__name__})") from None
    check_weights(path, model.policy.state_dict())
    meta = {"policy_type": policy_class_name(model.observation_space),
            "observation_space": describe_space(model.observation_space),
            "action_space": describe_space(model.action_space)}
    return model.policy, meta
