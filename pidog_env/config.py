"""Configuration of PiDog-v2 as dataclasses: one place for every knob, range and reward scale.

Timing is set in seconds (`ctrl_dt`, `sim_dt`, `episode_seconds`); the physics steps per control step
and the episode's step limit are derived from them. Every field carries its bounds and a help line
(`pidog config` lists them); `pidog_env.config_tree` validates and loads them strictly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from pidog_env.config_tree import ConfigError, Removed, from_dict, setting, validate
from pidog_env.robot import ACTION_SCALE_DEG, PhysicalParams

# robot.py imports numpy only, so its dataclass's removed settings are registered here.
PhysicalParams.REMOVED = {
    "servo_kv": Removed(0.06, "the servo's damping is the back-EMF, b = servo_torque / servo_speed, joint damping "
                              "outside the force clip (pidog_env.actuator)"),
}

# Reward terms in the order the env computes them; `RewardConfig.scales` must name exactly these.
REWARD_TERMS = ("forward", "alive", "upright", "lateral", "yaw_rate", "action_rate", "energy", "self_collision",
                "fall", "track_vx", "track_wz", "stand_still", "body_height", "torque_limit", "action_accel")


# Terms added after the first release (absent from old configs, which get them at scale 0).
ADDED_TERMS = ("self_collision", "track_vx", "track_wz", "stand_still", "body_height", "torque_limit",
               "action_accel")

# Terms that were removed: a saved configuration may hold them at scale 0 (what remains); any other scale is refused.
REMOVED_TERMS = {"torso_clearance": "the torso-corner clearance term cost speed (1.17-1.21x the trot) without "
                                    "holding the robustness suite at the reference budget "
                                    "(CHANGELOG.md)"}


# Settings added after a release, at the value that leaves behaviour as it was: a configuration holding that
# value hashes as it did before they existed (published results and exported policies keep their hash).
HASH_NEUTRAL: dict[tuple[str, ...], object] = {
    ("obs", "episode_physics"): False,
    ("reward", "scales", "action_accel"): 0.0,
}


def without_neutral(d: dict, neutral: dict[tuple[str, ...], object]) -> dict:
    """A copy of the nested dict `d` without the `neutral` entries that hold their neutral value."""
    import copy
    out = copy.deepcopy(d)
    for path, value in neutral.items():
        node = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == value:
            del node[path[-1]]
    return out


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
        "self_collision": -1.0,  # contacts between the front and hind leg of a side (poses that jam)
        "fall": -50.0,        # 1 on the step the episode terminates by a fall (large: see README)
        # The command task (env.command.enabled) only; forward and yaw_rate are 0 there instead.
        "track_vx": 2.0,      # exp(-(vx - commanded vx)^2 / tracking_sigma_vx), vx along the body heading
        "track_wz": 1.0,      # exp(-(wz - commanded wz)^2 / tracking_sigma_wz)
        "stand_still": -0.5,  # squared leg-target offset from the stand pose / 8, under the zero command
        "body_height": -3.0,  # (cm of torso height below reward.min_body_height)^2: margin against sagging
        "torque_limit": -2.0, # sum over leg servos of the torque above reward.torque_soft_limit x rated torque
        # Servo bandwidth: the second difference of the leg targets (off by default; the robust preset sets it).
        "action_accel": 0.0,  # |a_t - 2 a_{t-1} + a_{t-2}|^2 over the 8 normalized leg targets
    }


@dataclass
class RewardConfig:
    """Reward terms and their scales. `target_speed` sits well above the trot's so learning can beat it."""

    REMOVED = {"min_torso_clearance": Removed(0.078, REMOVED_TERMS["torso_clearance"])}

    target_speed: float = setting(0.30, ge=0.01, le=10, help="forward speed (m/s) at which the forward term saturates")
    # exp(-err^2 / sigma): sized to PiDog's speeds, a 0.03 m/s or 0.2 rad/s error earns exp(-1) of the term
    tracking_sigma_vx: float = setting(0.0009, gt=0, help="forward-speed tracking width, (m/s)^2 (command task)")
    tracking_sigma_wz: float = setting(0.04, gt=0, help="yaw-rate tracking width, (rad/s)^2 (command task)")
    # Servos that sag under load (weaker than trained, a heavier body) take the torso lower until it
    # touches the floor (a fall). Set at the trot's own margin: on v2's servos the trot walks with the
    # torso at 0.093 m (median under randomization), 0.090 its 5th percentile (v1's 0.097 was above the
    # v2 trot's median, so the term taxed the teacher's gait itself; docs/experiments/servo-model.md).
    min_body_height: float = setting(0.090, gt=0, le=0.2, help="torso height (m) below which body_height counts")
    # Servos lose torque with a sagging battery and wear; a gait that peaks near the rated torque has no
    # reserve. Set just above the trot's own peaks: its largest joint torque per step is 0.157 N m (0.83 of
    # the rated 0.19) in the median nominal step. At v1's 0.5 and at 0.7 the trot's randomized return
    # went negative in half the episodes and fine-tuning from BC drifted slower and fell more.
    torque_soft_limit: float = setting(0.85, gt=0, le=1, help="fraction of the rated servo torque "
                                                               "(physical.servo_torque) above which torque_limit counts")
    scales: dict[str, float] = setting(default_factory=_default_scales,
                                       help="per-term reward scales (see the env docstring)")

    def __post_init__(self) -> None:
        # A configuration saved before a term was removed holds it: at scale 0 (what remains) it is dropped.
        for term, why in REMOVED_TERMS.items():
            if term in self.scales:
                if self.scales[term] != 0.0:
                    raise ConfigError(f"reward.scales.{term} was removed: {why}")
                self.scales = {k: v for k, v in self.scales.items() if k != term}

    def check(self) -> None:
        if set(self.scales) != set(REWARD_TERMS):
            raise ConfigError(f"reward.scales must name the terms {', '.join(REWARD_TERMS)}")


@dataclass
class ObservationConfig:
    """What the policy sees. Everything is what the real robot can measure (IMU + commanded targets)."""

    REMOVED = {"privileged": Removed(False, "an actor that sees simulator state cannot run on the robot; it was "
                                            "never exported or adopted"),
               "critic_state": Removed(False, "the privileged (asymmetric) critic made no gain at the quick budget and "
                                              "fell more outside the training ranges over 3 seeds x 60 episodes "
                                              "(CHANGELOG.md)"),
               "gravity_alpha": Removed(0.04, "the gravity filter's weight is one fact shared with the robot runtime "
                                              "(pidog_env.observation.GRAVITY_ALPHA)")}

    ultrasonic: bool = setting(False, help="append forward distance / 2.9 m (1.0 when nothing is in range)")
    history: int = setting(0, ge=0, le=50, help="number of past observation frames appended")
    episode_physics: bool = setting(False, help="teacher only: append what the episode drew (servos, masses, friction, "
                                                "calibration, delays, IMU bias, the last push), scaled to order 1; "
                                                "the robot cannot measure it, so such a policy is never exported")


@dataclass
class CommandConfig:
    """The command task: the policy follows a commanded forward speed vx and yaw rate wz (in its
    observation), sampled per episode and renewed every few seconds. Off: today's forward-only task."""

    enabled: bool = setting(False, help="command task (velocity and turn commands in the observation)")
    vx_range: tuple[float, float] = setting((0.0, 0.12), ge=-0.1, le=0.3, ordered=True,
                                            help="commanded forward speed range, m/s (the trot reaches ~0.12)")
    wz_range: tuple[float, float] = setting((-0.5, 0.5), ge=-2.0, le=2.0, ordered=True,
                                            help="commanded yaw rate range, rad/s (positive turns left)")
    zero_share: float = setting(0.1, ge=0, le=1, help="share of sampled commands that are zero (stand still)")
    resample_s: tuple[float, float] = setting((4.0, 8.0), gt=0, ordered=True,
                                              help="seconds until a new command, uniform in this range")


@dataclass
class ImuConfig:
    """How often the policy's IMU sample is renewed. Its age (the robot runtime reads the SH3001 at the start
    of each tick, ~3 ms before the policy acts, `robot.IMU_SAMPLE_AGE_S`) is `randomization.imu_delay_substeps`:
    drawn from that range per episode, its midpoint without randomization (`EnvConfig.imu_delay_substeps`)."""

    REMOVED = {"accel_range_g": Removed(8.0, "the accelerometer's range is a robot fact (robot.IMU_ACCEL_RANGE_G)"),
               "delay_substeps": Removed(1, "the IMU sample's age is one range, randomization.imu_delay_substeps; "
                                            "without randomization its midpoint (1 physics step, about the robot's 3 ms)")}

    hold_steps: int = setting(1, ge=1, le=50, help="a new IMU sample every this many control steps (1: every step)")


@dataclass
class RandomizationConfig:
    """Domain randomization ranges (applied at reset unless `enabled` is False); `pidog_env.randomization`
    comments each with its source. The servos: one supply factor per episode (the shared 5 V rail) times a
    spread per servo around `physical` (the priors or a robot's identified values); their dead time varies
    by one physics step around `physical.servo_dead_time`."""

    REMOVED = {
        "kp_scale": Removed((0.8, 1.2), "the servo model's supply factor (randomization.supply) scales torque and "
                                        "P gain together, with a per-servo spread (randomization.servo_spread)"),
        "torque_scale": Removed((0.75, 1.25), "the servo model's supply factor (randomization.supply) scales torque "
                                              "and P gain together, with a per-servo spread (randomization.servo_spread)"),
        "init_yaw": Removed(0.3, "the start heading is a fixed +-0.3 rad (randomization.START_YAW_RAD): on the flat "
                                 "floor it changes nothing a state policy sees"),
    }

    enabled: bool = setting(True, help="randomize the episode's physics, sensors and pushes")
    friction: tuple[float, float] = setting((0.5, 1.2), gt=0, ordered=True,
                                            help="floor and foot sliding friction")
    mass_scale: tuple[float, float] = setting((0.85, 1.15), gt=0, ordered=True,
                                              help="per-body mass (and inertia) multiplier")
    com_offset: float = setting(0.005, ge=0, le=0.05, help="torso centre-of-mass shift, +- metres (x, y)")
    supply: tuple[float, float] = setting((0.85, 1.05), gt=0, le=2, ordered=True,
                                          help="servo supply factor per episode: every servo's torque and P gain")
    servo_spread: float = setting(0.1, ge=0, le=0.5, help="per-servo spread of torque, speed, P gain and friction, +- fraction")
    calibration_deg: float = setting(3.0, ge=0, le=20, help="per-joint command offset, +- degrees")
    latency_steps: tuple[int, int] = setting((0, 2), ge=0, le=50, ordered=True,
                                             help="action delay in control steps, inclusive range")
    imu_delay_substeps: tuple[int, int] = setting((0, 2), ge=0, le=50, ordered=True,
                                                  help="IMU sample age in physics steps, inclusive range (midpoint without randomization)")
    accel_noise: float = setting(0.3, ge=0, help="accelerometer noise std per sample (m/s^2)")
    accel_bias: float = setting(0.3, ge=0, help="accelerometer bias, +- per episode (m/s^2)")
    gyro_noise: float = setting(0.03, ge=0, help="gyro noise std per sample (rad/s)")
    gyro_bias: float = setting(0.03, ge=0, help="gyro bias, +- per episode (rad/s)")
    push_interval_s: tuple[float, float] = setting((2.0, 5.0), gt=0, ordered=True,
                                                   help="seconds between random pushes")
    push_velocity: float = setting(0.06, ge=0, le=2, help="horizontal velocity kick, +- m/s (half the trot's speed)")
    init_joint_noise_deg: float = setting(2.0, ge=0, le=30, help="start pose perturbation, +- degrees")


@dataclass
class EnvConfig:
    """PiDog-v2 configuration: 50 Hz control (ctrl_dt 20 ms) over 4 ms physics steps, 20 s episodes."""

    # (lower bounds: steps counted from these must stay finite integers; 5e-324 s overflowed them)
    ctrl_dt: float = setting(0.02, ge=0.001, le=0.2, help="seconds per control step (policy rate 1/ctrl_dt)")
    sim_dt: float = setting(0.004, ge=0.0001, le=0.01, help="seconds per physics step (ctrl_dt must be a multiple)")
    episode_seconds: float = setting(20.0, gt=0, le=3600, help="episode length; truncation after this")
    gait_period: float = setting(0.6148, ge=0.05, le=10, help="seconds per gait-clock cycle (the trot's)")
    use_camera: bool = setting(False, help="add the 3xSxS head-camera image (Dict observation)")
    camera_size: int = setting(48, ge=8, le=512, help="head camera image side in pixels")
    fall_tilt_deg: float = setting(60.0, gt=0, le=180, help="terminate beyond this tilt (deg)")
    action_scale_deg: float = setting(ACTION_SCALE_DEG, gt=0, le=90,
                                      help="joint target = stand pose + action x this (deg), action in [-1, 1]")
    render_size: tuple[int, int] = setting((480, 640), ge=16, le=4096, help="(height, width) of rgb_array frames")
    physical: PhysicalParams = field(default_factory=PhysicalParams)
    obs: ObservationConfig = field(default_factory=ObservationConfig)
    command: CommandConfig = field(default_factory=CommandConfig)
    imu: ImuConfig = field(default_factory=ImuConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    # ---------------------------------------------------------------- derived quantities
    @property
    def frame_skip(self) -> int:
        """Physics steps per control step."""
        return max(1, round(self.ctrl_dt / self.sim_dt))

    @property
    def imu_delay_substeps(self) -> int:
        """The IMU sample's age in physics steps without randomization: the randomized range's midpoint."""
        lo, hi = self.randomization.imu_delay_substeps
        return (lo + hi) // 2

    @property
    def episode_steps(self) -> int:
        """Control steps per episode (the truncation limit)."""
        return max(1, round(self.episode_seconds / self.ctrl_dt))

    def check(self) -> None:
        if abs(self.frame_skip * self.sim_dt - self.ctrl_dt) > 1e-9:
            raise ConfigError(f"ctrl_dt {self.ctrl_dt} must be a whole multiple of sim_dt {self.sim_dt}")
        delays = self.randomization.imu_delay_substeps
        if max(delays) >= self.frame_skip:
            raise ConfigError(f"IMU delays {delays} must be shorter than a control step ({self.frame_skip} physics steps)")

    # ---------------------------------------------------------------- serialization
    def to_dict(self) -> dict:
        return asdict(self)

    def hash(self) -> str:
        """Short stable hash of everything that changes what a policy sees or does (settings added later are
        left out at the value that changes nothing, `HASH_NEUTRAL`, so earlier configurations keep theirs)."""
        blob = json.dumps(without_neutral(self.to_dict(), HASH_NEUTRAL), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict) -> "EnvConfig":
        """Strict: an unknown key is a ConfigError naming it; the result is validated. A configuration saved
        before a reward term existed gets that term at scale 0 (the reward it was trained with)."""
        scales = d.get("reward", {}).get("scales") if isinstance(d, dict) and isinstance(d.get("reward"), dict) else None
        if isinstance(scales, dict):
            d = {**d, "reward": {**d["reward"], "scales": {**{k: 0.0 for k in ADDED_TERMS}, **scales}}}
        cfg = from_dict(cls, d)
        validate(cfg)
        return cfg
