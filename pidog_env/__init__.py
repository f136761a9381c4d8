"""PiDog MuJoCo model and gymnasium environment.

`import pidog_env` registers `PiDog-v2` with gymnasium when gymnasium is installed; the submodules
`robot` and `kinematics` need numpy only (the Raspberry Pi runtime uses them).
"""

import os

# Headless rendering unless the user chose otherwise: mujoco reads MUJOCO_GL when it is imported, and
# every path to mujoco in this project goes through this package first.
os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa's software rasterizer (llvmpipe, what EGL/OSMesa use without a GPU) splits each frame over
# worker threads; for the 48x48 head camera their hand-off costs more than it saves (camera-mode
# steps are 1.1x faster with one thread), and training processes already fill the cores.
os.environ.setdefault("LP_NUM_THREADS", "1")

ENV_ID = "PiDog-v2"        # the gymnasium id; it changes when the defaults change what is simulated or rewarded

try:
    from gymnasium.envs.registration import register, registry
except ImportError:  # the robot runtime has no gymnasium
    pass
else:
    if ENV_ID not in registry:
        register(
            id=ENV_ID,
            entry_point="pidog_env.env:PiDogEnv",   # truncates itself after EnvConfig.episode_seconds
        )
