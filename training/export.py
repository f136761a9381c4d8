"""Export a trained policy for the robot: `policy.onnx` (observation -> deterministic action) plus
`policy.json` (observation layout and scaling, action scaling, joint order, control rate, gait clock,
env config hash, versions), verified against PyTorch on recorded observations.

    pidog export --model outputs/<exp>/final_model.zip [--out outputs/<exp>/export]

Host-side code (it needs torch and the training stack); `deploy/` holds what runs on the robot.

Accepts SB3 zips written by this project (PPO, SAC, TD3) and BC `.pth` policies. Camera and
ultrasonic policies cannot run on the robot and are refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from deploy.policy_spec import PolicySpec
from pidog_env import robot
from pidog_env.config import EnvConfig
from pidog_env.observation import GRAVITY_ALPHA, GYRO_SCALE, frame_layout
from pidog_env.evaluation import run_episode
from training.common import PipelineError, make_env, versions
from training.evaluation import policy_callable

PARITY_TOL = 1e-5


class DeterministicActor(torch.nn.Module):
    """The policy's mean action, clipped to the action space (what SB3's predict(deterministic) returns)."""

    def __init__(self, policy) -> None:
        super().__init__()
        self.features = policy.pi_features_extractor
        self.latent = policy.mlp_extractor.policy_net
        self.action = policy.action_net

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.action(self.latent(self.features(obs))), -1.0, 1.0)


class OffPolicyActor(torch.nn.Module):
    """SAC's or TD3's deterministic action (what their predict(deterministic=True) returns): SAC squashes
    its mean action with tanh, TD3's actor network ends in tanh already."""

    def __init__(self, policy, algo: str) -> None:
        super().__init__()
        actor = policy.actor
        self.features = actor.features_extractor
        if algo == "SAC":
            if getattr(actor, "use_sde", False):
                raise PipelineError("SAC policies with gSDE cannot be exported yet")
            self.net = torch.nn.Sequential(actor.latent_pi, actor.mu, torch.nn.Tanh())
        else:
            self.net = actor.mu

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(self.features(obs)), -1.0, 1.0)


def spec_for(env_cfg: EnvConfig, source: str) -> PolicySpec:
    layout = frame_layout(env_cfg.obs.ultrasonic, env_cfg.command.enabled)
    frame = max(s.stop for s in layout.values())
    return PolicySpec(
        control_dt=env_cfg.ctrl_dt, gait_period=env_cfg.gait_period, gravity_alpha=GRAVITY_ALPHA,
        history=env_cfg.obs.history, ultrasonic=env_cfg.obs.ultrasonic, obs_size=frame * (env_cfg.obs.history + 1),
        frame_layout={k: [v.start, v.stop] for k, v in layout.items()}, gyro_scale=GYRO_SCALE,
        leg_joints=list(robot.LEG_JOINTS), leg_signs=robot.LEG_SIGNS.tolist(), leg_q_limits_rad=robot.LEG_LIMITS_RAD.tolist(),
        action_offset_rad=robot.STAND_Q.tolist(), action_scale_rad=float(np.deg2rad(env_cfg.action_scale_deg)),
        leg_speed_deg_s=robot.LEG_SPEED_DEG_S, leg_servo_limits_deg=robot.LEG_SERVO_LIMITS_DEG.tolist(),
        imu_accel_range_g=robot.IMU_ACCEL_RANGE_G,
        stand_pose_deg=robot.POSES_DEG["stand"].tolist(), lie_pose_deg=robot.POSES_DEG["lie"].tolist(),
        fall_tilt_deg=env_cfg.fall_tilt_deg, env_config_hash=env_cfg.hash(), versions=versions(), source=source,
        command=env_cfg.command.enabled, command_vx_range=list(env_cfg.command.vx_range),
        command_wz_range=list(env_cfg.command.wz_range))


def record_observations(policy, env_cfg: EnvConfig, steps: int, seed: int = 0) -> np.ndarray:
    """`steps` observations the policy visits (episodes run one after another from `seed`)."""
    env = make_env(env_cfg)
    rows: list[np.ndarray] = []

    def keep(step: int, obs, info: dict, total: float) -> bool:
        if len(rows) >= steps:
            return False
        rows.append(obs)
        return True

    act = policy_callable(policy)
    try:
        while len(rows) < steps:
            run_episode(act, env, seed + len(rows), on_step=keep)
    finally:
        env.close()
    return np.asarray(rows, dtype=np.float32)


def export(model: str | Path, out_dir: Path, check_steps: int = 500, force: bool = False,
           allow_pickle: bool = False) -> dict:
    from training.policies import load_policy
    policy, meta = load_policy(model, allow_pickle=allow_pickle)
    env_cfg: EnvConfig = meta.get("env_config_obj") or EnvConfig()
    if env_cfg.obs.episode_physics:
        raise PipelineError("this policy is a teacher: it sees the episode's simulated physics "
                            "(env.obs.episode_physics), which the robot cannot measure; export its student "
                            "(student_policy.pth, distill.history)")
    if env_cfg.use_camera:
        raise PipelineError("camera policies cannot be exported for the robot runtime (no camera pipeline there)")
    if env_cfg.obs.ultrasonic:
        raise PipelineError("ultrasonic policies cannot be exported yet: the robot runtime has no non-blocking "
                            "ultrasonic reader (the vendor's busy-waits holding the GIL); train without obs.ultrasonic")
    off_policy = meta.get("algo") in ("SAC", "TD3")
    actor = (OffPolicyActor(policy, meta["algo"]) if off_policy else DeterministicActor(policy)).eval()
    onnx_path, json_path = out_dir / "policy.onnx", out_dir / "policy.json"
    existing = [p for p in (onnx_path, json_path) if p.exists()]
    if existing and not force:
        raise PipelineError(f"{existing[0]} exists; pass --force to replace it or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)

    spec = spec_for(env_cfg, str(model))
    dummy = torch.zeros(1, spec.obs_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(actor, (dummy,), str(onnx_path), input_names=["obs"], output_names=["action"],
                          dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    spec.save(json_path)
    # Parity: onnxruntime against PyTorch (SB3 predict) on observations the policy really visits.
    import onnxruntime as ort
    obs = record_observations(policy, env_cfg, check_steps)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_act = session.run(None, {"obs": obs[:, :spec.obs_size]})[0]        # the robot's part only
    torch_act = policy.predict(obs, deterministic=True)[0]                  # the whole observation
    max_diff = float(np.abs(onnx_act - torch_act).max())
    if not max_diff <= PARITY_TOL:
        raise PipelineError(f"ONNX and PyTorch actions differ by {max_diff:.2e} (> {PARITY_TOL})")
    return {"onnx": str(onnx_path), "json": str(json_path), "max_abs_diff": max_diff, "checked": len(obs)}
