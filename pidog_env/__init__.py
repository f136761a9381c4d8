"""PiDog MuJoCo model and gymnasium environment.

`import pidog_env` registers `PiDog-v0` with gymnasium when gymnasium is installed; the submodules
`robot` and `kinematics` need numpy only (the Raspberry Pi runtime uses them).
"""

import os

# Headless rendering unless the user chose otherwise: mujoco reads MUJOCO_GL when it is imported, and
# every path to mujoco in this project goes through this package first.
os.environ.setdefault("MUJOCO_GL", "egl")

try:
    from gymnasium.envs.registration import register, registry
except ImportError:  # the robot runtime has no gymnasium
    pass
else:
    if "PiDog-v0" not in registry:
        register(
            id="PiDog-v0",
            entry_point="pidog_env.env:PiDogEnv",   # truncates itself after EnvConfig.episode_seconds
        )
