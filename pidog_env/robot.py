"""The one place for PiDog facts: joint order, limits, poses, geometry and the servo <-> model mapping.

Everything here comes from the vendor library (see shared/PIDOG_FACTS.md) except the physical
parameters in `PhysicalParams`, which the vendor does not publish and which are therefore estimates
that the environment randomizes. This module imports numpy only, so the Raspberry Pi runtime can use it.

Conventions
-----------
* Model frame: x forward, y left, z up. Every leg hinge axis is +y.
* Vendor servo angles are degrees. Left legs: q = +servo; right legs (mirrored servos): q = -servo.
  Hip: thigh angle from straight down, positive swings the foot rearward.
  Knee: interior knee angle minus 90 deg, positive opens the knee. Zero pose: thigh down, shin forward.
* Policy actions are offsets from the stand pose: q = stand + a x ACTION_SCALE_DEG, a in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import math

import numpy as np

# ---------------------------------------------------------------- joints (vendor array order)
LEG_JOINTS: tuple[str, ...] = (
    "LF_hip", "LF_knee", "RF_hip", "RF_knee", "LH_hip", "LH_knee", "RH_hip", "RH_knee",
)
HEAD_JOINTS: tuple[str, ...] = ("head_yaw", "head_roll", "head_pitch")
TAIL_JOINTS: tuple[str, ...] = ("tail",)
ALL_JOINTS: tuple[str, ...] = LEG_JOINTS + HEAD_JOINTS + TAIL_JOINTS
LEGS: tuple[str, ...] = ("LF", "RF", "LH", "RH")
N_LEG = len(LEG_JOINTS)

# Servo -> model sign per leg joint (right side mirrored). Head/tail axes are chosen so the sign is +1.
LEG_SIGNS = np.array([+1, +1, -1, -1, +1, +1, -1, -1], dtype=np.float64)
HEAD_SIGNS = np.array([+1, +1, +1], dtype=np.float64)
TAIL_SIGNS = np.array([+1], dtype=np.float64)
ALL_SIGNS = np.concatenate([LEG_SIGNS, HEAD_SIGNS, TAIL_SIGNS])

# ---------------------------------------------------------------- servo limits (degrees)
LEG_SPEED_DEG_S = 428.0                     # vendor speed cap for legs
HEAD_LIMITS_DEG = np.array([[-90.0, 90.0], [-70.0, 70.0], [-45.0, 30.0]])   # yaw, roll, pitch
TAIL_LIMITS_DEG = np.array([[-90.0, 90.0]])
CALIBRATION_OFFSET_MAX_DEG = 20.0           # pidog.conf offsets are clamped to this

# Safe joint envelope (model radians are the left-leg servo convention for every leg, since the right
# servos are mirrored): the range the vendor's whole action library stays in. +-90 deg is only the servo
# command range: a knee folded below -45 deg or crossing front/hind legs (reach 118 mm > 117 mm hip
# spacing) jam the servos on the frame. The model's joint ranges, the action clip, policy.json and the
# runtime's safety layer all use this table.
HIP_ENVELOPE_DEG = (-80.0, 90.0)
KNEE_ENVELOPE_DEG = (-45.0, 75.0)
LEG_ENVELOPE_DEG = np.array([HIP_ENVELOPE_DEG, KNEE_ENVELOPE_DEG] * (N_LEG // 2))   # (8, 2), model convention
LEG_LIMITS_RAD = np.deg2rad(LEG_ENVELOPE_DEG)                                      # (8, 2) lower, upper
LEG_Q_MIN, LEG_Q_MAX = LEG_LIMITS_RAD[:, 0].copy(), LEG_LIMITS_RAD[:, 1].copy()
# The same envelope in vendor servo degrees (right legs negated, so their bounds swap).
LEG_SERVO_LIMITS_DEG = np.sort(LEG_ENVELOPE_DEG * LEG_SIGNS[:, None], axis=1)
# Policy actions are offsets from the stand pose: target = stand + action x 45 deg, action in [-1, 1],
# clipped to the envelope. The trot moves each joint at most 36.4 deg from stand (hind knee; front hip
# 26.3) and stays inside the envelope; stand +- 45 deg reaches past it only at the hind hips' upper end.
ACTION_SCALE_DEG = 45.0
ALL_LIMITS_DEG = np.vstack([LEG_SERVO_LIMITS_DEG, HEAD_LIMITS_DEG, TAIL_LIMITS_DEG])    # vendor servo degrees

# Servo command encoding (robot-hat 2.5.x servo.py/pwm.py): the angle -90..90 deg maps linearly to a
# 500..2500 us pulse in a 20 ms (50 Hz) frame, written as int(pulse / 20000 x 4095) timer counts: 4.88 us,
# 0.44 deg per count, rounded down.
SERVO_PULSE_US = (500.0, 2500.0)
SERVO_PWM_PERIOD_US = 20000.0
SERVO_PWM_COUNTS = 4095

# ---------------------------------------------------------------- the robot's electronics (runtime facts)
# Robot HAT PWM channels in leg array order, and the vendor's one-by-one start-up order (0.15 s apart,
# so the servos do not all draw current at once); head (yaw, roll, pitch) and tail channels.
LEG_PINS = (2, 3, 7, 8, 0, 1, 10, 11)
LEG_INIT_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
HEAD_PINS = (4, 6, 5)
HEAD_INIT_DEG = (0.0, 0.0, 45.0)            # the vendor holds the head level: its pitch servo offset is 45
TAIL_PINS = (9,)
# SH3001 IMU. The vendor configures +-2 g, which trot foot impacts exceed; the runtime sets +-8 g and
# the simulator clips its accelerometer at the same range. Gyro +-2000 deg/s: 32768 / 2000 LSB per deg/s.
IMU_ACCEL_RANGE_G = 8.0
IMU_ACCEL_LSB_PER_G = 32768.0 / IMU_ACCEL_RANGE_G
IMU_GYRO_RANGE_DPS = 2000.0
IMU_GYRO_LSB_PER_DPS = 32768.0 / IMU_GYRO_RANGE_DPS
IMU_READ_S = 0.0014                          # one 12-byte block read at 100 kHz I2C
# The runtime reads the IMU directly at the start of each tick (no vendor thread): the sample is about
# 3 ms old when the policy sees it (half the 500 Hz output period, the 125 Hz low-pass filter's delay and
# the read), i.e. one 4 ms physics step in the simulator, which randomizes it over 0-2 steps.
IMU_SAMPLE_AGE_S = 0.003
IMU_STALE_S = 0.150                          # no new IMU sample for this long: lie down
IMU_START_OFFSET_MAX_G = 0.1                 # refuse to start when the still, level robot reads further off
# Battery: 2S Li-ion (8.4 V full, 7.4 V nominal, 6.0 V over-discharge cut-off). Servo current sags the
# voltage by a few tenths of a volt under load, so standing is refused below the first threshold at rest
# and the robot lies down when the voltage stays below the second one while walking.
BATTERY_MIN_START_V = 7.0
BATTERY_MIN_RUN_V = 6.4
BATTERY_LOW_SECONDS = 1.5
# One 5 V DC-DC converter (5.17-5.33 V) feeds all 12 servos and the Raspberry Pi: its current limit (A) per
# Robot HAT version. When the servos together pull more, the rail sags (users report Pi brown-outs).
HAT_CURRENT_LIMIT_A = {"V4": 3.0, "V5": 5.0}
# The vendor stack this runtime was written against (pidog 1.3.13 needs robot-hat 2.5.x: 2.6.x removes
# robot_hat/robot.py, which pidog imports).
TESTED_VENDOR_VERSIONS = {"pidog": "1.3.13", "robot_hat": "2.5.5"}

# ---------------------------------------------------------------- geometry (metres)
THIGH_LENGTH = 0.042                        # hip axis to knee axis
SHIN_LENGTH = 0.076                         # knee axis to foot tip
HIP_SPACING_X = 0.117                       # front-to-hind
HIP_SPACING_Y = 0.098                       # left-to-right
HIP_POSITIONS = {                           # in the body frame, relative to the body centre
    "LF": np.array([+HIP_SPACING_X / 2, +HIP_SPACING_Y / 2, 0.0]),
    "RF": np.array([+HIP_SPACING_X / 2, -HIP_SPACING_Y / 2, 0.0]),
    "LH": np.array([-HIP_SPACING_X / 2, +HIP_SPACING_Y / 2, 0.0]),
    "RH": np.array([-HIP_SPACING_X / 2, -HIP_SPACING_Y / 2, 0.0]),
}
# Vendor stand foot targets (y rearward, z down from hip), mm, from which the stand pose is derived.
STAND_FOOT_YZ_MM = {"front": (-15.0, 95.0), "hind": (5.0, 90.0)}
ULTRASONIC_MAX_RANGE = 2.9                  # HC-SR04, metres; the library returns -1 on timeout

# ---------------------------------------------------------------- named poses (vendor degrees)
POSES_DEG: dict[str, np.ndarray] = {
    "lie": np.array([45, -45, -45, 45, 45, -45, -45, 45], dtype=np.float64),
    "stand": np.array([40.61, 15.54, -40.61, -15.54, 60.28, 5.26, -60.28, -5.26]),
    "sit": np.array([30, 60, -30, -60, 80, -45, -80, 45], dtype=np.float64),
}
NEUTRAL_HEAD_DEG = np.zeros(3)
NEUTRAL_TAIL_DEG = np.zeros(1)


@dataclass(frozen=True)
class PhysicalParams:
    """Physical numbers the vendor does not publish: priors, randomized by the env, or the values a
    servo identification (`pidog sysid`) measured on one robot.

    total_mass: 0.80 kg. Parts suggest 0.8-1.0 kg (12 metal-gear micro servos ~13 g each, two 18650
        cells 91 g, a Raspberry Pi ~46 g, aluminium/acrylic frame); third-party guesses span 0.44-0.95.
        0.80 is where both estimates overlap. Randomized +-15 % per body.

    The servos (`pidog_env.actuator`: a DC motor behind a P loop, tau(w) = s tau_s - b w with
    b = servo_torque / servo_speed) at the nominal 5 V rail (the HAT's DC-DC gives 5.17-5.33 V, 5.25 V in
    the middle). PiDog's servos have no published data; the priors are MG90S-class metal-gear micro
    servos (the closest published part) and the vendor's own comment:
    servo_torque: 0.19 N m stall torque at the horn. MG90S datasheet: 1.8 kgf cm at 4.8 V, 2.2 at 6 V
        (0.18-0.22 N m), linear in the voltage: 1.95 kgf cm at 5.25 V. (Third-party "SF006FM" claims
        1.3-1.4 kgf cm, unverified.) With this backward-knee leg a trot stance knee carries 0.1-0.18 N m
        at 0.8 kg: the real servos "struggle with the weight", and so does the model.
    servo_speed: 9.6 rad/s no-load speed at the horn. MG90S datasheet: 0.10 s/60 deg at 4.8 V, 0.08 at
        6 V: 11.3 rad/s at 5.25 V; robot-hat's comment on its 428 deg/s cap ("4.8V : 60des/0.14s"):
        7.5 rad/s at 4.8 V, 8.2 at 5.25 V (a DC motor's no-load speed is proportional to its voltage).
        9.6 is the middle of the two sources; b = 0.0198 N m s/rad and at most 0.5 W per joint.
    servo_kp: 3.0 N m/rad. A hobby servo's P loop saturates within a few degrees of error
        (0.20 / 3.0 rad = 3.8 deg to full torque); no published figure.
    armature: 8e-5 kg m^2 (gear-reflected rotor inertia) and joint_friction 0.015 N m (gear friction):
        micro-servo gear trains (~1:300) are lossy; no published figure.
    servo_dead_time: 12 ms from a written command to the motor's response: robot-hat's PWM runs at
        50 Hz, so a new pulse width waits 0-20 ms (10 on average) for the next frame, and the servo knows
        it at the pulse's end (1.5 ms at mid-range). Comparable measurements: Mini Pupper 2's hobby servos
        76 ms from the controller's command (PiDog's software latency is `randomization.latency_steps`).
    """

    # Settings that were removed (name -> config_tree.Removed): set by pidog_env.config, so this module
    # imports numpy only.
    REMOVED: ClassVar[dict] = {}

    # Bounds (field metadata, read by pidog_env.config_tree) keep values physically meaningful.
    total_mass: float = field(default=0.80, metadata={"gt": 0.2, "le": 5.0, "help": "total robot mass (kg)"})
    servo_torque: float = field(default=0.19, metadata={"gt": 0.0, "le": 5.0,
                                                        "help": "servo stall torque at the horn, 5 V rail (N m)"})
    servo_speed: float = field(default=9.6, metadata={"gt": 0.0, "le": 100.0,
                                                      "help": "servo no-load speed at the horn, 5 V rail (rad/s)"})
    servo_kp: float = field(default=3.0, metadata={"gt": 0.0, "le": 1000.0,
                                                   "help": "servo P loop: torque per radian of error (N m/rad)"})
    armature: float = field(default=8e-5, metadata={"ge": 0.0, "le": 0.1,
                                                    "help": "gear-reflected rotor inertia (kg m^2)"})
    joint_friction: float = field(default=0.015, metadata={"ge": 0.0, "le": 1.0, "help": "gear friction loss (N m)"})
    servo_dead_time: float = field(default=0.012, metadata={"ge": 0.0, "le": 0.2,
                                                            "help": "servo dead time, command to motion (s)"})


# ---------------------------------------------------------------- conversions
def servo_deg_to_model_rad(servo_deg: np.ndarray, signs: np.ndarray = LEG_SIGNS) -> np.ndarray:
    """Vendor servo degrees -> model joint radians (applies the right-side sign flip)."""
    return np.deg2rad(np.asarray(servo_deg, dtype=np.float64)) * signs


def model_rad_to_servo_deg(q_rad: np.ndarray, signs: np.ndarray = LEG_SIGNS) -> np.ndarray:
    """Model joint radians -> vendor servo degrees (inverse of `servo_deg_to_model_rad`)."""
    return np.rad2deg(np.asarray(q_rad, dtype=np.float64)) * signs


def action_to_leg_rad(action: np.ndarray, scale_deg: float = ACTION_SCALE_DEG) -> np.ndarray:
    """Normalized action in [-1, 1] -> model leg joint radians: the stand pose plus `scale_deg` per unit,
    clipped to the safe joint envelope."""
    q = STAND_Q + np.asarray(action, dtype=np.float64) * math.radians(scale_deg)
    np.maximum(q, LEG_Q_MIN, out=q)             # = np.clip, without its Python wrapper (every control step)
    return np.minimum(q, LEG_Q_MAX, out=q)


def leg_rad_to_action(q_rad: np.ndarray, scale_deg: float = ACTION_SCALE_DEG) -> np.ndarray:
    """Model leg joint radians -> normalized action (inverse of `action_to_leg_rad` inside the range)."""
    return (np.asarray(q_rad, dtype=np.float64) - STAND_Q) / np.deg2rad(scale_deg)


def pose_rad(name: str) -> np.ndarray:
    """Named vendor leg pose in model radians (leg array order)."""
    return servo_deg_to_model_rad(POSES_DEG[name])


# The action's zero: the vendor stand pose, in model radians (right-side signs applied).
STAND_Q = pose_rad("stand")


def full_pose_rad(name: str) -> np.ndarray:
    """All 12 joint targets (legs in pose `name`, head and tail neutral) in model radians."""
    deg = np.concatenate([POSES_DEG[name], NEUTRAL_HEAD_DEG, NEUTRAL_TAIL_DEG])
    return servo_deg_to_model_rad(deg, ALL_SIGNS)
