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
SERVO_RANGE_DEG = 90.0                      # -90..+90 deg command range (500..2500 us)
SERVO_RESOLUTION_DEG = 0.44
SERVO_DEADBAND_DEG = 1.0                    # the library skips moves smaller than this
LEG_SPEED_DEG_S = 428.0                     # vendor speed cap for legs
HEAD_SPEED_DEG_S = 300.0
TAIL_SPEED_DEG_S = 500.0
HEAD_LIMITS_DEG = np.array([[-90.0, 90.0], [-70.0, 70.0], [-45.0, 30.0]])   # yaw, roll, pitch
TAIL_LIMITS_DEG = np.array([[-90.0, 90.0]])
CALIBRATION_OFFSET_MAX_DEG = 20.0           # pidog.conf offsets are clamped to this

LEG_Q_MAX = np.deg2rad(SERVO_RANGE_DEG)     # model joint limit magnitude (rad), symmetric
# Policy actions are offsets from the stand pose: target = stand + action x 45 deg, action in [-1, 1].
# The trot moves each joint at most 36.4 deg from stand (hind knee; front hip 26.3), so it is reachable
# with margin. Stand +- 45 deg stays inside the vendor's whole action library (knee -45..70, hip -80..90,
# left-leg convention) except the hind hips' upper end, which the servo range (+-90) clips.
ACTION_SCALE_DEG = 45.0
LEG_LIMITS_RAD = np.tile([-LEG_Q_MAX, LEG_Q_MAX], (N_LEG, 1))
ALL_LIMITS_DEG = np.vstack([np.tile([-SERVO_RANGE_DEG, SERVO_RANGE_DEG], (N_LEG, 1)),
                            HEAD_LIMITS_DEG, TAIL_LIMITS_DEG])
SPEED_LIMITS_DEG_S = np.array([LEG_SPEED_DEG_S] * N_LEG + [HEAD_SPEED_DEG_S] * 3 + [TAIL_SPEED_DEG_S])

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
STAND_HEIGHT_FRONT = 0.095                  # hip above foot in the stand pose
STAND_HEIGHT_HIND = 0.090
GAIT_BODY_HEIGHT = 0.080                    # the vendor's walk and trot use 80 mm
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
    """Physical numbers the vendor does not publish: nominal values, randomized by the env.

    total_mass: 0.80 kg. Parts suggest 0.8-1.0 kg (12 metal-gear micro servos ~13 g each, two 18650
        cells 91 g, a Raspberry Pi ~46 g, aluminium/acrylic frame); third-party guesses span 0.44-0.95.
        0.80 is where both estimates overlap. Randomized +-15 % per body.
    servo_torque: 0.20 N m stall torque, in the 0.13-0.22 N m third-party range (MG90S-class metal-gear
        micro servos are rated ~0.2 N m at 5-6 V). With this backward-knee leg a trot stance knee
        carries 0.1-0.18 N m at 0.8 kg, close to the limit: the real servos "struggle with the weight",
        and so does the model. Randomized 0.75-1.25x (0.15-0.25 N m).
    servo_kp: 3.0 N m/rad. A hobby servo's P loop saturates within a few degrees of error
        (0.20 / 3.0 rad = 3.8 deg to full torque). Randomized 0.8-1.2x.
    servo_kv: 0.06 N m s/rad and joint_friction 0.015 N m: micro-servo gear trains (~1:300) are lossy;
        with armature 8e-5 kg m^2 (gear-reflected rotor inertia) the joint response is near critically
        damped. An under-damped servo model (kv 0.02) made every trot bounce off the floor.
    """

    # Bounds (field metadata, read by pidog_env.config_tree) keep values physically meaningful.
    total_mass: float = field(default=0.80, metadata={"gt": 0.2, "le": 5.0, "help": "total robot mass (kg)"})
    servo_torque: float = field(default=0.20, metadata={"gt": 0.0, "help": "servo stall torque (N m)"})
    servo_kp: float = field(default=3.0, metadata={"gt": 0.0, "help": "servo stiffness (N m/rad)"})
    servo_kv: float = field(default=0.06, metadata={"ge": 0.0, "help": "servo damping (N m s/rad)"})
    armature: float = field(default=8e-5, metadata={"ge": 0.0, "help": "gear-reflected rotor inertia (kg m^2)"})
    joint_friction: float = field(default=0.015, metadata={"ge": 0.0, "help": "gear friction loss (N m)"})


# ---------------------------------------------------------------- conversions
def servo_deg_to_model_rad(servo_deg: np.ndarray, signs: np.ndarray = LEG_SIGNS) -> np.ndarray:
    """Vendor servo degrees -> model joint radians (applies the right-side sign flip)."""
    return np.deg2rad(np.asarray(servo_deg, dtype=np.float64)) * signs


def model_rad_to_servo_deg(q_rad: np.ndarray, signs: np.ndarray = LEG_SIGNS) -> np.ndarray:
    """Model joint radians -> vendor servo degrees (inverse of `servo_deg_to_model_rad`)."""
    return np.rad2deg(np.asarray(q_rad, dtype=np.float64)) * signs


def action_to_leg_rad(action: np.ndarray, scale_deg: float = ACTION_SCALE_DEG) -> np.ndarray:
    """Normalized action in [-1, 1] -> model leg joint radians: the stand pose plus `scale_deg` per unit,
    clipped to the servo range."""
    q = STAND_Q + np.asarray(action, dtype=np.float64) * np.deg2rad(scale_deg)
    return np.clip(q, -LEG_Q_MAX, LEG_Q_MAX)


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
