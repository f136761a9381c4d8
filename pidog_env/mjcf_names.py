"""Names of the MJCF elements the code addresses (pidog.xml, scene.xml): the one place they are spelled.

Joint and actuator names are the robot's joint names and live in `robot.ALL_JOINTS`.
"""

from pidog_env.robot import LEGS

TORSO = "torso"                                          # body: the free-floating base
FLOOR = "floor"                                          # geom
FOOT_GEOMS = tuple(f"{leg}_foot" for leg in LEGS)        # geoms: foot spheres (friction randomized)
THIGH_GEOMS = tuple(f"{leg}_thigh" for leg in LEGS)      # geoms: leg capsules (self-collision pairs)
SHIN_GEOMS = tuple(f"{leg}_shin" for leg in LEGS)
FOOT_SITES = FOOT_GEOMS                                  # sites at the foot tips share the geom names
THIGH_BODIES = THIGH_GEOMS                               # leg bodies share their capsules' names
SHIN_BODIES = SHIN_GEOMS

# Sensors
ACCEL = "accel"
GYRO = "gyro"
ULTRASONIC = "ultrasonic"
TORSO_TOUCH = "torso_touch"
HEAD_TOUCH = "head_touch"
# Contact sensors added by model.build_spec: per side, contacts between the front and the hind leg.
SELF_COLLISION = tuple(f"self_collision_{side}" for side in ("left", "right"))

# Cameras and keyframes
TRACK_CAMERA = "track"                                   # follows the torso (videos, rgb_array)
HEAD_CAMERA = "head_cam"                                 # the robot's own camera (use_camera)
STAND_KEY = "stand"                                      # keyframes are robot.POSES_DEG's names
