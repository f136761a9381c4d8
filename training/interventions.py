"""Expert interventions (HIL-SERL in PiDog form): when the learner is about to fall, the expert takes over.

`ExpertIntervention` wraps the env. Each step it reads the tilt and the tilt rate from the observation
(what the robot itself measures: the gravity direction and the gyro); when the tilt exceeds
`TAKE_OVER_TILT_DEG` or the roll/pitch rate exceeds `TAKE_OVER_RATE` it executes the expert's action
(the trot; the commanded trot in the command task) instead of the learner's, until the body has been
within `RELEASE_TILT_DEG` and `RELEASE_RATE` for `RELEASE_STEPS` steps. Such steps carry
`info["intervened"] = True` and `info["executed_action"]` (`KeyboardIntervention`: a person decides,
with Enter in MuJoCo's viewer); the demonstration-mixing replay buffer
(`training.replay`) stores them with the executed action among the demonstrations, so the learner is
trained on the corrections. The thresholds sit well inside the 60 deg fall limit and outside the trot's
own motion (over 6 randomized episodes its tilt peaked at 9.6 deg, p99 8.4; its roll/pitch rate at
2.5 rad/s, p99 1.8).

The learner's step that ends past a threshold is the one that called the expert: it carries
`info["takeover"] = True` and its reward is lowered by `penalty` (RLIF: the takeover is the signal that
the learner went wrong; `off_policy.intervention_penalty`, by default the env's fall penalty, since the
takeover stands in for the fall it prevents). Without it the critic never sees what the learner's risky
actions cost: the expert catches the dog before the fall that would have taught it. The Monitor inside
the wrapper logs the env's own reward.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from pidog_env.gaits import TrotGait
from pidog_env.observation import GYRO_SCALE

TAKE_OVER_TILT_DEG = 25.0       # body tilt from upright
TAKE_OVER_RATE = 3.0            # rad/s, roll/pitch rate magnitude
RELEASE_TILT_DEG = 10.0
RELEASE_RATE = 1.0
RELEASE_STEPS = 10              # 0.2 s of calm before the learner gets control back


def tilt_and_rate(obs: np.ndarray, layout: dict[str, slice]) -> tuple[float, float]:
    """(tilt in degrees, roll/pitch rate in rad/s) from one observation frame."""
    g = obs[layout["gravity"]]
    w = obs[layout["gyro"]] / GYRO_SCALE
    tilt = math.degrees(math.acos(max(-1.0, min(1.0, -float(g[2])))))
    return tilt, math.hypot(float(w[0]), float(w[1]))


def beyond_limits(obs: np.ndarray, layout: dict[str, slice]) -> bool:
    """Whether the expert should take over in the state `obs`."""
    tilt, rate = tilt_and_rate(obs, layout)
    return tilt > TAKE_OVER_TILT_DEG or rate > TAKE_OVER_RATE


class ExpertIntervention(gym.Wrapper):
    def __init__(self, env: gym.Env, penalty: float = 0.0) -> None:
        super().__init__(env)
        self.penalty = float(penalty)
        base = env.unwrapped
        self.layout = base.obs_layout
        self.expert = TrotGait.for_env(base)
        self.active = False
        self.calm = 0
        self.last_obs: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.active, self.calm, self.last_obs = False, 0, obs
        return obs, info

    def step(self, action):
        obs = self.last_obs
        if not self.active and beyond_limits(obs, self.layout):      # e.g. a reset into a tilted pose
            self.active, self.calm = True, 0
        executed = np.asarray(self.expert(obs), dtype=np.float32) if self.active else action
        next_obs, reward, terminated, truncated, info = self.env.step(executed)
        info["intervened"] = self.active
        if not self.active:
            info["takeover"] = not terminated and beyond_limits(next_obs, self.layout)
            if info["takeover"]:                  # the learner's action called the expert: it pays for it
                self.active, self.calm = True, 0
                reward = float(reward) - self.penalty
        else:
            info["executed_action"] = executed
            tilt, rate = tilt_and_rate(next_obs, self.layout)
            self.calm = self.calm + 1 if tilt < RELEASE_TILT_DEG and rate < RELEASE_RATE else 0
            if self.calm >= RELEASE_STEPS:
                self.active = False
        self.last_obs = next_obs
        return next_obs, reward, terminated, truncated, info


# GLFW key code of Enter (MuJoCo's viewer passes GLFW codes to its key callback)
TAKE_OVER_KEY = 257


class KeyboardIntervention(ExpertIntervention):
    """A person's corrections: Enter in MuJoCo's viewer window hands control to the expert and Enter again
    takes it back (the viewer reports presses, not releases). Steps under the expert are flagged and
    stored exactly like `ExpertIntervention`'s. The env renders to the viewer (render_mode="human")."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.held = False
        env.unwrapped.key_callback = self.on_key

    def on_key(self, keycode: int) -> None:
        if keycode == TAKE_OVER_KEY:
            self.held = not self.held
            print(f"intervention: {'the expert drives' if self.held else 'the policy drives'}", flush=True)

    def step(self, action):
        obs = self.last_obs
        executed = np.asarray(self.expert(obs), dtype=np.float32) if self.held else action
        next_obs, reward, terminated, truncated, info = self.env.step(executed)
        info["intervened"] = self.held
        if self.held:
            info["executed_action"] = executed
        self.last_obs = next_obs
        return next_obs, reward, terminated, truncated, info


class InterventionLog:
    """Counts intervened steps per window of env steps (the intervention rate over training)."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self.history: list[dict] = []           # {"timesteps", "intervention_rate", "takeovers"} per window
        self._steps = self._hits = self._takeovers = 0

    def record(self, infos: list[dict], timesteps: int) -> dict | None:
        self._steps += len(infos)
        self._hits += sum(bool(i.get("intervened")) for i in infos)
        self._takeovers += sum(bool(i.get("takeover")) for i in infos)
        if self._steps >= self.window:
            row = {"timesteps": int(timesteps), "intervention_rate": self._hits / self._steps,
                   "takeovers": self._takeovers}
            self.history.append(row)
            self._steps = self._hits = self._takeovers = 0
            return row
        return None

    def rate_between(self, lo: float, hi: float) -> float | None:
        """Mean intervention rate over the windows between fractions `lo` and `hi` of training."""
        if not self.history:
            return None
        end = self.history[-1]["timesteps"]
        rows = [h["intervention_rate"] for h in self.history if lo * end < h["timesteps"] <= hi * end + 1e-9]
        return float(np.mean(rows)) if rows else None
