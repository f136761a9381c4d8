"""`policy.json`: everything the robot needs to rebuild the env's observation and use the policy's
actions, written by `pidog export` (training/export.py) next to `policy.onnx`. Numpy-free and torch-free to read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPEC_VERSION = 3                          # 2: actions are offsets from the stand pose; 3: per-joint safe envelope


@dataclass
class PolicySpec:
    control_dt: float                     # seconds per control step (1 / rate)
    gait_period: float                    # seconds per gait-clock cycle
    gravity_alpha: float                  # complementary filter weight of the accelerometer
    history: int                          # past observation frames appended
    ultrasonic: bool
    obs_size: int
    frame_layout: dict[str, list[int]]    # name -> [start, stop] in one frame
    gyro_scale: float
    leg_joints: list[str]                 # vendor leg array order
    leg_signs: list[float]                # servo -> model sign per joint
    leg_q_limits_rad: list[list[float]]   # per joint [lower, upper]: targets are clipped to these (model radians)
    action_offset_rad: list[float]        # action 0 = these model joint angles (the stand pose)
    action_scale_rad: float               # action 1.0 = offset + this many radians
    leg_speed_deg_s: float
    leg_servo_limits_deg: list[list[float]]   # the same envelope in vendor servo degrees (safety layer clamp)
    imu_accel_range_g: float              # the accelerometer range the policy was trained with (sim clip)
    stand_pose_deg: list[float]
    lie_pose_deg: list[float]
    fall_tilt_deg: float
    env_config_hash: str
    versions: dict[str, str] = field(default_factory=dict)
    source: str = ""
    spec_version: int = SPEC_VERSION
    # The command task: the observation carries (vx, wz) after the clock; the ranges it was trained on.
    command: bool = False
    command_vx_range: list[float] = field(default_factory=lambda: [0.0, 0.0])
    command_wz_range: list[float] = field(default_factory=lambda: [0.0, 0.0])

    @property
    def control_hz(self) -> float:
        return 1.0 / self.control_dt

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({**asdict(self), "control_hz": self.control_hz}, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "PolicySpec":
        data = json.loads(Path(path).read_text())
        data.pop("control_hz", None)
        if data.get("spec_version") != SPEC_VERSION:
            raise ValueError(f"{path}: policy.json version {data.get('spec_version')} (expected {SPEC_VERSION}: "
                             "actions are offsets from the stand pose since version 2, clipped to a per-joint safe "
                             "envelope since version 3; export the policy again)")
        return cls(**data)
