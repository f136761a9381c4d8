"""Configuration of PiDog-v0 as dataclasses: one place for every knob and reward scale."""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass

from pidog_env.robot import PhysicalParams


def _default_scales() -> dict[str, float]:
    # Each term's per-step value is multiplied by its scale; see PiDogEnv's docstring for definitions.
    return {
        "forward": 2.0,       # forward speed along the start heading / target speed, capped at 1
        "alive": 0.2,         # 1 every step the robot has not fallen
        "upright": -1.0,      # squared horizontal part of the body-frame gravity (sin^2 of tilt)
        "lateral": -0.5,      # (lateral speed / target speed)^2
        "yaw_rate": -0.1,     # yaw rate^2 (rad/s)^2
        "action_rate": -0.05, # |a_t - a_{t-1}|^2 over the 8 normalized leg targets
        "energy": -0.02,      # sum |torque * joint speed| over the leg servos (W)
        "fall": -50.0,        # 1 on the step the episode terminates by a fall (large: see README)
    }


@dataclass
class RewardConfig:
    """Reward terms and their scales. `target_speed` sits well above the trot's so learning can beat it."""

    target_speed: float = 0.30
    scales: dict[str, float] = field(default_factory=_default_scales)


@dataclass
class ObservationConfig:
    """What the policy sees. Defaults are what the real robot can measure (IMU + commanded targets)."""

    ultrasonic: bool = False     # forward distance / 2.9 m (1.0 when nothing is in range)
    history: int = 0             # number of past observation frames appended
    privileged: bool = False     # + joint angles/velocities, body velocity and height (sim only)
    gravity_alpha: float = 0.04  # complementary filter: weight of the accelerometer per control step


@dataclass
class RandomizationConfig:
    """Domain randomization ranges (applied at reset unless `enabled` is False)."""

    enabled: bool = True
    friction: tuple[float, float] = (0.5, 1.2)          # floor and foot sliding friction
    mass_scale: tuple[float, float] = (0.85, 1.15)      # per-body mass (and inertia) multiplier
    com_offset: float = 0.005                           # torso centre-of-mass shift, +- metres (x, y)
    kp_scale: tuple[float, float] = (0.8, 1.2)          # servo stiffness multiplier
    torque_scale: tuple[float, float] = (0.75, 1.25)    # servo force limit multiplier (0.135-0.225 N m)
    calibration_deg: float = 3.0                        # per-joint offset between command and servo, +-
    latency_steps: tuple[int, int] = (0, 2)             # action delay in control steps, inclusive
    accel_noise: float = 0.3                            # m/s^2 std per sample
    accel_bias: float = 0.3                             # m/s^2, +- per episode
    gyro_noise: float = 0.03                            # rad/s std per sample
    gyro_bias: float = 0.03                             # rad/s, +- per episode
    push_interval_s: tuple[float, float] = (2.0, 5.0)   # time between random pushes
    push_velocity: float = 0.15                         # m/s, +- horizontal velocity kick
    init_joint_noise_deg: float = 2.0                   # start pose perturbation
    init_yaw: float = 0.3                               # +- rad start heading


@dataclass
class EnvConfig:
    """PiDog-v0 configuration. The control rate is 1 / (timestep * frame_skip) = 50 Hz."""

    frame_skip: int = 5                   # physics steps of 4 ms per control step
    episode_seconds: float = 20.0
    gait_period: float = 0.6148           # seconds per gait-clock cycle (the trot's; vendor ~0.54)
    use_camera: bool = False
    camera_size: int = 48                 # head camera image is camera_size x camera_size RGB
    fall_tilt_deg: float = 60.0           # terminate beyond this tilt
    render_size: tuple[int, int] = (480, 640)   # (height, width) of rgb_array frames
    physical: PhysicalParams = field(default_factory=PhysicalParams)
    obs: ObservationConfig = field(default_factory=ObservationConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def hash(self) -> str:
        """Short stable hash of everything that changes what a policy sees or does."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict) -> "EnvConfig":
        return dataclass_from_dict(cls, d)


def dataclass_from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from its `asdict` form, e.g. read back from JSON.

    Nested dataclass fields are rebuilt from their annotations; JSON lists become tuples (every
    sequence field in these configs is a tuple). Unknown keys are ignored, missing ones keep defaults.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value, kind = data[f.name], hints[f.name]
        if is_dataclass(kind) and isinstance(value, dict):
            value = dataclass_from_dict(kind, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
