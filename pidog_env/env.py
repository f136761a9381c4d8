"""PiDog-v2: the SunFounder PiDog walking forward on flat ground, or following velocity and turn
commands (`command.enabled`), at 50 Hz.

This docstring is the environment's spec; the README's environment tables are copies of the tables
below, and `tests/test_docs.py` checks them against this text and against `EnvConfig`.

## Action space
`Box(-1, 1, (8,), float32)`: leg joint targets in the vendor leg order (LF hip, LF knee, RF hip,
RF knee, LH hip, LH knee, RH hip, RH knee) as offsets from the vendor stand pose: target = stand +
action x `action_scale_deg` (45 deg), clipped to the safe joint envelope (hip -80..90 deg, knee -45..75 deg,
`robot.LEG_ENVELOPE_DEG`; `robot.action_to_leg_rad`).
An action of zero holds the stand pose; the trot needs at most 0.81 of the range. Targets are
rate-limited to 428 deg/s like the vendor library, reach the servos as the vendor PWM encodes them (whole
counts of 4.88 us, 0.44 deg) and act after the servos' dead time (below); head and tail hold neutral.

## Servos
`pidog_env.actuator`: each of the 12 servos is a DC motor behind a P loop, so its torque falls with its
speed, tau(w) = s tau_s - b w, b = tau_s / w0 (at most s^2 tau_s w0 / 4, 0.5 W, of mechanical power):
MuJoCo's position actuator with kv 0 and a force limit at the stall torque, the back-EMF as joint damping
outside that limit, gear friction and armature, and a command dead time of whole physics steps. The
values are `physical` (`robot.PhysicalParams`: MG90S-class datasheet priors with their sources, or what
`pidog sysid` identified on a robot): stall torque `servo_torque` 0.19 N m and no-load speed `servo_speed`
9.6 rad/s at the horn, P gain `servo_kp` 3 N m/rad, `joint_friction` 0.015 N m, `armature` 8e-5 kg m^2,
dead time `servo_dead_time` 12 ms (3 physics steps). Each randomized episode draws one supply factor s
(`randomization.supply`, 0.85-1.05: the shared 5 V rail, which sags under load) scaling every servo's
torque and P gain, a per-servo spread of stall torque, no-load speed, P gain and friction
(`randomization.servo_spread`, +-10 %) and the dead time +-1 physics step; without randomization s = 1.
`bench/actuator_check.py` measures the stall torque and no-load speed the model produces and checks that
no gait draws power above the DC line. The reward's servo torque is the motor's: the P loop's drive less
the back-EMF.

## Observation space
`Box(-10, 10, ((16 [+2 command] [+1 ultrasonic]) * (history + 1),), float32)`: only what
the real robot measures (`pidog_env.observation` builds it for the env and the robot runtime alike):

| index | observation                                               | scale             |
|-------|-----------------------------------------------------------|-------------------|
| 0-2   | gravity direction in the body frame (gyro + accel filter) | unit vector       |
| 3-5   | gyro rates                                                | rad/s x 0.25      |
| 6-13  | last commanded leg targets (offsets from stand)           | action units      |
| 14-15 | gait clock sin, cos (period `gait_period`, 0.6148 s)      | [-1, 1]           |

Options: `command.enabled` (+2 after the clock: the command task's forward speed x 8 and yaw rate x 2),
`obs.ultrasonic` (+1, distance / 2.9 m), `obs.history=K` (+K past frames, newest first),
`obs.episode_physics` (+62 after the frames, a teacher's privileged input the robot cannot measure:
`randomization.PHYSICS_FEATURES`, 59 entries scaled to order 1, then the last push's kick / 0.06 m/s and the
seconds since it, capped at 1; `env.unwrapped.privileged()`). `use_camera=True`
gives `Dict(image=Box(0, 255, (3, S, S), uint8), state=<the vector above>)` (channels first).

The IMU sample behind an observation is `randomization.imu_delay_substeps` (0-2) physics steps old, drawn
per episode, the range's midpoint (1 = 4 ms) without randomization (the robot reads its IMU at the start of
each tick, ~3 ms before the policy acts); `imu.hold_steps` > 1 repeats a sample for that many steps; the
accelerometer clips at 8 g (`robot.IMU_ACCEL_RANGE_G`, the range the runtime configures). The gravity
direction is a complementary filter with accelerometer weight `observation.GRAVITY_ALPHA` (0.04 per step),
the same in the runtime.

## Rewards
Per step, the sum of `scale * value` over the terms (`_reward`); scales in `RewardConfig.scales`,
each step's scaled terms in `info["reward_terms"]`; target = `reward.target_speed` (0.30 m/s):

| term        | value                                                       | scale |
|-------------|-------------------------------------------------------------|-------|
| forward     | min(forward speed along the start heading, target) / target | 2.0   |
| alive       | 1                                                           | 0.2   |
| upright     | sin^2(tilt) (horizontal part of body-frame gravity)         | -1.0  |
| lateral     | (lateral speed / target)^2                                  | -0.5  |
| yaw_rate    | yaw rate^2 ((rad/s)^2)                                      | -0.1  |
| action_rate | squared change of the normalized leg targets                | -0.05 |
| energy      | sum over leg servos of abs(torque x joint speed) (W)        | -0.02 |
| self_collision | contacts between the front and hind leg of one side      | -1.0  |
| fall        | 1 when the episode ends by a fall                           | -50.0 |
| track_vx    | exp(-(vx - commanded vx)^2 / 0.0009), command task only     | 2.0   |
| track_wz    | exp(-(wz - commanded wz)^2 / 0.04), command task only       | 1.0   |
| stand_still | squared leg targets / 8 under the zero command              | -0.5  |
| body_height | (cm of torso height below `reward.min_body_height`, 0.09 m)^2 | -3.0  |
| torque_limit | sum over leg servos of max(0, abs(torque) / rated torque (0.19 N m) - `reward.torque_soft_limit` (0.85)) | -2.0 |
| action_accel | squared second difference of the normalized leg targets    | 0.0   |

In the command task (`command.enabled`), vx and the lateral speed are measured along the body's current
heading (the forward task: along the start heading) and wz is the yaw rate; `forward` and `yaw_rate`
are 0 (tracking replaces them); `reward.tracking_sigma_vx` / `_wz` set the tracking widths.

## Commands
With `command.enabled`, each episode starts with a command (vx, wz) drawn from `command.vx_range`
(0-0.12 m/s) and `command.wz_range` (+-0.5 rad/s; positive turns left), a `command.zero_share` (10 %) of
them zero, renewed every `command.resample_s` (4-8 s), all from the env's seeded generator.
`reset(options={"command": (vx, wz)})` fixes the command for the episode and
`env.unwrapped.set_command(vx, wz)` from the next step on (teleoperation); `env.unwrapped.command` is
the current one. The commanded trot (`TrotGait.for_env`) reads it from the observation.

## Episode end
Terminates on a fall: tilt above `fall_tilt_deg` (60 deg; upside down included), torso or head
touching the floor, or a physics blow-up (`info["physics_unstable"]`). Truncated after
`episode_seconds` (20 s = 1000 steps at `ctrl_dt` 0.02 s): the env itself returns `truncated=True`.

## Arguments
`gymnasium.make("PiDog-v2", config=EnvConfig(...), render_mode=None | "rgb_array" | "human", **shortcuts)`.
Every setting is a field of `pidog_env.config.EnvConfig` (timing in seconds: `ctrl_dt` 0.02, `sim_dt`
0.004, `episode_seconds` 20; the physics steps per control step and the step limit derive from them).
Keyword shortcuts (`KEYWORD_SHORTCUTS`) set the same fields: `randomize`, `ultrasonic`, `history`,
`use_camera`, `camera_size`, `episode_seconds`, `render_size`.
`env.unwrapped.set_randomization(RandomizationConfig)` replaces the randomization ranges from the next
reset on (the training curriculum, `pidog_env.curriculum`, uses it through `VecEnv.env_method`).

## Info
`reward_terms`, `forward_distance` (m, along the start heading), `forward_speed` (m/s, last step),
`lateral_speed`, `mean_forward_speed`, `lateral_drift` (m), `heading_change_deg`, `phase`, `fell`,
`fall_cause` (`tilt`, `torso_touch` or `head_touch` on a fall, else empty), `torso_height` (m),
`physics_unstable`; in the command task also `command_vx`, `command_wz` (the command of that step),
`vx`, `wz` (measured) and the episode means `mean_vx`, `mean_wz`, `mean_vx_error`, `mean_wz_error`
(mean absolute per-step tracking errors).

## Version history
- v2: `obs.episode_physics` (a teacher's privileged input, off by default) and the `action_accel` term (the
  leg targets' second difference, servo bandwidth; scale 0 by default and for configurations saved before it).
  Defaults unchanged.
- v2: the servos are power-limited DC motors behind a P loop (`pidog_env.actuator`, "Servos" above): the
  torque falls with speed instead of staying at the force limit at full speed (v1 clipped kp e - kv w as a
  whole, so a joint got 0.20 N m at 428 deg/s and the trot drew 1.7 W from a servo that gives at most
  0.5), targets are quantized like the vendor PWM and act after a 12 ms dead time. Priors with their
  sources in `robot.PhysicalParams`: stall torque 0.19 N m (was 0.20), no-load speed `servo_speed`
  9.6 rad/s (replaces `servo_kv`), dead time `servo_dead_time`. Randomization: one supply factor per
  episode (`randomization.supply`) and a per-servo spread (`randomization.servo_spread`) replace the
  independent `kp_scale` and `torque_scale`; the dead time varies by a physics step; pushes are at most
  half the trot's speed (`push_velocity` 0.06 m/s, was 0.15); the start heading is a fixed +-0.3 rad
  (`init_yaw` is gone). The reward's servo torque (`energy`, `torque_limit`) is the motor's, drive less
  back-EMF. The reward's margins sit at the re-tuned trot's own operating point: `reward.min_body_height`
  0.090 m (was 0.097, above the trot's median torso height of 0.093 m on these servos) and
  `reward.torque_soft_limit` 0.85 (was 0.5; the trot's median peak joint torque is 0.83 of the rated
  torque): with v1's margins the trot's randomized return was negative in half the episodes and
  fine-tuning from BC drifted slower and fell more (docs/experiments/servo-model.md). The
  trot (`gaits.TrotParams`) is re-tuned for these servos. `PiDog-v1` is refused, naming v2; saved
  configurations with the removed settings at their v1 defaults load (CHANGELOG.md).
- v1: the research options measured and not adopted are gone: the `torso_clearance` term
  (`reward.min_torso_clearance`), the critic-only state (`obs.critic_state`) and the simulator state in the
  actor's observation (`obs.privileged`); facts that were settings are constants (`obs.gravity_alpha`,
  `imu.accel_range_g`); the IMU
  sample's nominal age is the midpoint of `randomization.imu_delay_substeps` (`imu.delay_substeps` is gone).
  Default behaviour is unchanged step for step; the id moves to v1 because the settings that define it
  changed. `PiDog-v0` is refused, naming v1. Saved configurations that hold a removed setting at its old
  default load; any other value is refused with the reason (CHANGELOG.md).
- v0: `torso_clearance` term (scale 0 by default and for configurations saved before it;
  `reward.min_torso_clearance`): like `body_height`, but at the torso's lowest corner, so pitch and roll
  count as well as sag. Defaults unchanged.
- v0: `body_height` (-3 below 0.097 m) and `torque_limit` (-2 above 0.5 x the rated torque) are on by
  default, so fine-tuning keeps a height and torque reserve for servos and loads outside the training
  ranges; configurations saved before them keep scale 0.
- v0: `torque_limit` term (scale 0 by default and for configurations saved before it;
  `reward.torque_soft_limit`). Defaults unchanged.
- v0: `body_height` term (scale 0 by default and for configurations saved before it; `reward.min_body_height`);
  `info` adds `fall_cause` and `torso_height`. Defaults unchanged.
- v0: the command task (`command`; forward-only stays the default and unchanged): +2 observation
  entries, `track_vx`, `track_wz` and `stand_still` terms (scale 0 for configurations saved before them).
- v0 (this release): the safe joint envelope replaces the +-90 deg servo range for the action clip and the
  joint limits; leg capsules collide with the floor and with the other leg of their side (`self_collision`
  term; configurations saved before it get scale 0); the IMU sample is delayed, optionally held, and the
  accelerometer clipped like the robot runtime's (`imu`, `randomization.imu_delay_substeps`);
  `obs.critic_state` appends a critic-only privileged state (asymmetric actor-critic);
  `set_randomization` for the randomization curriculum.
- v0: actions are offsets from the stand pose (`action_scale_deg`), so a fresh policy
  stands instead of collapsing; policies with absolute joint-target actions are refused.
- v0: timing set in seconds in `EnvConfig` (`ctrl_dt`, `sim_dt`, `episode_seconds`
  replace `frame_skip` and the registered 1000-step limit); the env truncates itself. Policies saved
  before this change carry a `frame_skip` setting and are refused with a one-line error.
- v0 (first release): forward walking, IMU + last-command observation, domain randomization.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections import deque
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from pidog_env import config_tree
from pidog_env import mjcf_names as names
from pidog_env import robot
from pidog_env.actuator import ServoDrive, ServoParams
from pidog_env.commands import Commands
from pidog_env.config import REWARD_TERMS, EnvConfig, RandomizationConfig
from pidog_env.model import ModelIndex, load_model, self_collisions
from pidog_env.observation import (GRAVITY, GRAVITY_ALPHA, OBS_CLIP, GravityEstimator, ObservationStack, build_frame,
                                   frame_layout, frame_size)
from pidog_env.randomization import PRIVILEGED_SIZE, EpisodeDraw, Randomizer, next_push_step, push
from pidog_env.rendering import Renderers, coarse_visual_copy, has_display

# The rendering helpers stay importable from here (the training tools import them from this module).
__all__ = ["PiDogEnv", "STAND_ACTION", "KEYWORD_SHORTCUTS", "observation_space", "actor_obs_size", "action_space",
           "has_display", "coarse_visual_copy"]

_UNSTABLE_WARNINGS = slice(int(mujoco.mjtWarning.mjWARN_BADQPOS), int(mujoco.mjtWarning.mjWARN_BADQACC) + 1)
assert _UNSTABLE_WARNINGS.stop - _UNSTABLE_WARNINGS.start == 3      # BADQPOS, BADQVEL, BADQACC
STAND_ACTION = np.zeros(robot.N_LEG)            # actions are offsets from the stand pose


class PiDogEnv(gym.Env):
    __doc__ = __doc__
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": int(round(1.0 / EnvConfig().ctrl_dt))}

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        cfg = config or EnvConfig()
        for key, value in overrides.items():
            if key not in KEYWORD_SHORTCUTS:
                raise TypeError(f"PiDog-v2 got an unknown option {key!r} (known: {', '.join(KEYWORD_SHORTCUTS)})")
            cfg = config_tree.apply(cfg, KEYWORD_SHORTCUTS[key], value)
        config_tree.validate(cfg)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.cfg = cfg
        self.render_mode = render_mode
        self.model = load_model(cfg.physical, cfg.sim_dt)
        self.data = mujoco.MjData(self.model)
        self.idx = ModelIndex.of(self.model)
        self.dt = cfg.ctrl_dt
        self._frame_skip = cfg.frame_skip
        self._episode_steps = cfg.episode_steps
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.dt))}
        self._stand_key = self.model.key(names.STAND_KEY).id
        self._randomizer = Randomizer(self.model, self.idx, ServoParams.from_physical(cfg.physical))
        self._commands = Commands(cfg.command, self.dt)
        self._max_step = robot.LEG_SPEED_DEG_S * self.dt / cfg.action_scale_deg         # in action units
        self._cos_fall = np.cos(np.deg2rad(cfg.fall_tilt_deg))
        self._scale_values = tuple(cfg.reward.scales[k] for k in REWARD_TERMS)
        # Views into MjData, taken once (the arrays never move): attribute look-ups cost every step.
        d = self.data
        self._qpos, self._sens, self._xmat, self._warnings = d.qpos, d.sensordata, d.xmat, d.warning.number
        # The servos' torque on the leg joints: the P loop's drive less the back-EMF (joint damping).
        self._leg_force, self._leg_damper = d.actuator_force[self.idx.leg_act], d.qfrc_damper[self.idx.leg_qvel]
        # The leg servos' command path: quantized like the vendor PWM, acting after the episode's dead time.
        self._drive = ServoDrive(d.ctrl[self.idx.leg_act], 0, signs=robot.LEG_SIGNS)
        self._rated_torque = cfg.physical.servo_torque   # the robot's, not the episode's randomized force limit
        self._leg_qvel = d.qvel[self.idx.leg_qvel]
        self._accel_max = robot.IMU_ACCEL_RANGE_G * GRAVITY
        self._imu_hold = cfg.imu.hold_steps

        self.obs_layout = frame_layout(cfg.obs.ultrasonic, cfg.command.enabled)
        self._frame = np.zeros(max(s.stop for s in self.obs_layout.values()))
        self._stack = ObservationStack(self._frame.size, cfg.obs.history)
        self._gravity = GravityEstimator(GRAVITY_ALPHA, self.dt)
        self.observation_space = observation_space(cfg)
        self.action_space = action_space(cfg)

        self._renderers = Renderers(self.model, self.data, cfg.render_size, cfg.camera_size, self.idx.torso_body)
        self.key_callback = None          # keys pressed in the human-mode viewer (GLFW codes), e.g. interventions
        self._nominal_episode()

    def set_randomization(self, randomization: RandomizationConfig) -> None:
        """New randomization ranges from the next reset on (the training curriculum widens them)."""
        self.cfg = dataclasses.replace(self.cfg, randomization=randomization)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        m, d, rng, dr = self.model, self.data, self.np_random, self.cfg.randomization
        self._randomizer.restore()
        mujoco.mj_resetDataKeyframe(m, d, self._stand_key)
        self._nominal_episode()
        self._steps = 0
        if dr.enabled:
            self._episode = self._randomizer.draw(dr, rng)
            self._push_at = next_push_step(self._steps, dr, self.dt, rng)
            self._randomizer.perturb_start(d, dr, rng)
        mujoco.mj_forward(m, d)
        latency = self._episode.latency
        self._command = STAND_ACTION.copy()
        self._prev_action = STAND_ACTION.copy()
        self._prev2_action = STAND_ACTION.copy()
        self._queue = deque([STAND_ACTION.copy()] * (latency + 1), maxlen=latency + 1)
        self._drive.reset(self._leg_target(STAND_ACTION), self._episode.dead_substeps)
        self._start_pos = tuple(d.qpos[0:2].tolist())
        self._start_yaw = _yaw(d.qpos[3:7])
        self._heading = (math.cos(self._start_yaw), math.sin(self._start_yaw))
        self._commands.reset(options, self._steps, rng)
        obs = self._stack.reset(self._make_frame(reset=True))
        return self._wrap_obs(obs), self._metrics(0.0, 0.0)

    def step(self, action: np.ndarray):
        a = np.array(action, dtype=np.float64)               # a copy: the caller's array is not touched
        if a.shape != (robot.N_LEG,):
            raise ValueError(f"PiDog-v2 action must have shape ({robot.N_LEG},), got {a.shape}")
        if not math.isfinite(a.sum()):                         # any NaN or inf makes the sum non-finite
            raise ValueError(f"PiDog-v2 action contains NaN or inf: {a}")
        m, d, idx = self.model, self.data, self.idx
        # Vendor-style rate limit towards the clipped target, then the (randomized) latency.
        np.minimum(a, 1.0, out=a)
        np.maximum(a, -1.0, out=a)
        a -= self._command
        np.minimum(a, self._max_step, out=a)
        np.maximum(a, -self._max_step, out=a)
        self._prev2_action = self._prev_action
        self._prev_action = self._command
        self._command = self._command + a
        self._queue.append(self._command)
        self._drive.command(self._leg_target(self._queue[0]))

        qpos, sens = self._qpos, self._sens
        x0, y0 = qpos[0:2].tolist()
        if self._push_at is not None and self._steps >= self._push_at:
            dr = self.cfg.randomization                 # the current ranges (set_randomization applies at once)
            self._last_push = push(d.qvel, dr, self.np_random)
            self._push_step = self._steps
            self._push_at = next_push_step(self._steps, dr, self.dt, self.np_random)
        # The IMU sample the policy sees is `imu_delay` physics steps old (the robot reads it at the tick's start).
        delay, drive = self._episode.imu_delay, self._drive
        if delay:
            drive.advance(m, d, self._frame_skip - delay)
            self._imu_raw = sens[idx.accel.start:idx.gyro.stop].tolist()
            drive.advance(m, d, delay)
        else:
            drive.advance(m, d, self._frame_skip)
            self._imu_raw = None
        self._steps += 1

        # MuJoCo checks qpos/qvel/qacc for NaN or huge values every physics step and, when it finds
        # one, resets the data and counts a warning; the episode then ends from a clean keyframe state.
        unstable = any(self._warnings[_UNSTABLE_WARNINGS].tolist())
        if unstable:
            mujoco.mj_resetDataKeyframe(m, d, self._stand_key)
            mujoco.mj_forward(m, d)
            x0, y0 = qpos[0:2].tolist()
        # Forward task: speeds along the start heading; command task: along the body's current heading.
        cmd = self._commands.current
        if cmd is None:
            hx, hy = self._heading
        else:
            yaw = _yaw(qpos[3:7])
            hx, hy = math.cos(yaw), math.sin(yaw)
        x1, y1 = qpos[0:2].tolist()
        vx, vy = (x1 - x0) / self.dt, (y1 - y0) / self.dt
        v_fwd = vx * hx + vy * hy
        v_lat = vy * hx - vx * hy
        yaw_rate = sens[idx.gyro.start + 2].item()
        up_z = self._xmat[idx.torso_body, 8].item()          # body z axis . world z
        fall_cause = ("tilt" if up_z < self._cos_fall else "torso_touch" if sens[idx.torso_touch] > 0
                      else "head_touch" if sens[idx.head_touch] > 0 else "")
        fell = bool(fall_cause)
        terminated = fell or unstable
        height = qpos[2].item()

        terms = self._reward(cmd, v_fwd, v_lat, yaw_rate, up_z, height, terminated)
        reward = sum(terms.values())
        truncated = self._steps >= self._episode_steps and not terminated

        # The command the policy acted on, before a new one is due.
        info_cmd = self._commands.track(v_fwd, yaw_rate, self._steps, self.np_random)
        obs = self._stack.push(self._make_frame())
        info = self._metrics(v_fwd, v_lat)
        if info_cmd:
            info.update(info_cmd)
        info["reward_terms"] = terms
        info["fell"] = fell
        info["fall_cause"] = fall_cause
        info["torso_height"] = height
        info["physics_unstable"] = unstable
        if self.render_mode == "human":
            self.render()
        return self._wrap_obs(obs), float(reward), terminated, truncated, info

    def _reward(self, cmd: tuple[float, float] | None, v_fwd: float, v_lat: float, yaw_rate: float, up_z: float,
                height: float, terminated: bool) -> dict[str, float]:
        """Each term's `scale * value` (values as in the docstring's reward table), in REWARD_TERMS order;
        `cmd` is the command (None in the forward task), `up_z` the body z axis . world z, `height` the
        torso's height (m)."""
        rc = self.cfg.reward
        target = rc.target_speed
        da = self._command - self._prev_action
        dda = da - (self._prev_action - self._prev2_action)
        torque = self._leg_force + self._leg_damper
        power = (torque * self._leg_qvel).tolist()
        rated, soft = self._rated_torque, rc.torque_soft_limit
        if cmd is None:                             # forward task
            forward, yaw_cost, track_vx, track_wz, still = min(v_fwd, target) / target, yaw_rate * yaw_rate, 0.0, 0.0, 0.0
        else:                                       # command task: tracking replaces forward and yaw_rate
            cvx, cwz = cmd
            forward, yaw_cost = 0.0, 0.0
            track_vx = math.exp(-(v_fwd - cvx) ** 2 / rc.tracking_sigma_vx)
            track_wz = math.exp(-(yaw_rate - cwz) ** 2 / rc.tracking_sigma_wz)
            still = float(self._command @ self._command) / robot.N_LEG if cvx == 0.0 and cwz == 0.0 else 0.0
        values = (
            forward,                                # forward
            1.0,                                    # alive
            1.0 - up_z * up_z,                      # upright: sin^2(tilt)
            (v_lat / target) ** 2,                  # lateral
            yaw_cost,                               # yaw_rate
            float(da @ da),                         # action_rate
            sum(map(abs, power)),                   # energy
            float(self_collisions(self.data, self.idx)),   # self_collision
            1.0 if terminated else 0.0,             # fall
            track_vx,                               # track_vx
            track_wz,                               # track_wz
            still,                                  # stand_still
            (100.0 * max(0.0, rc.min_body_height - height)) ** 2,   # body_height (cm below the minimum)^2
            sum(max(0.0, abs(f) / rated - soft) for f in torque.tolist()),    # torque_limit
            float(dda @ dda),                       # action_accel
        )
        return dict(zip(REWARD_TERMS, map(operator.mul, self._scale_values, values)))

    def render(self):
        if self.render_mode == "rgb_array":
            return self._renderers.frame()
        if self.render_mode == "human":
            self._renderers.show(self.key_callback)
        return None

    def close(self) -> None:
        self._renderers.close()

    def camera_image(self) -> np.ndarray:
        """The head camera's RGB image, channels first (3 x S x S); see `Renderers.head_camera`."""
        return self._renderers.head_camera()

    # ------------------------------------------------------------------ commands (env.command)
    @property
    def command(self) -> tuple[float, float] | None:
        """The current (vx m/s, wz rad/s) command; None in the forward task."""
        return self._commands.current

    def set_command(self, vx: float, wz: float) -> None:
        """Command (vx, wz) from the next step on, held until the next reset (teleoperation, the robot
        runtime's simulated robot); no new command is sampled meanwhile."""
        self._commands.set(vx, wz)

    # ------------------------------------------------------------------ helpers
    @property
    def phase(self) -> float:
        """Gait clock phase in cycles, in [0, 1)."""
        return (self._steps * self.dt / self.cfg.gait_period) % 1.0

    def _nominal_episode(self) -> None:
        """The episode's parameters without randomization, and a fresh IMU and push state."""
        self._episode = EpisodeDraw.nominal(self.cfg, self._randomizer.nominal_friction)
        self._imu_raw: list[float] | None = None
        self._noise_rows: list[list[float]] = []   # pre-drawn IMU noise samples, 64 at a time
        self._noise_i = 0
        self._push_at: int | None = None
        self._last_push, self._push_step = np.zeros(2), -10**9

    def privileged(self) -> np.ndarray:
        """The teacher's privileged input (`obs.episode_physics`): the episode's drawn physics
        (`randomization.PHYSICS_FEATURES`) and the last push (kick x, y / 0.06 m/s, seconds since it, capped
        at 1 s), float32."""
        since = min(1.0, (self._steps - self._push_step) * self.dt)
        out = np.empty(PRIVILEGED_SIZE, np.float32)
        out[:-3] = self._episode.physics
        out[-3:-1] = self._last_push / 0.06
        out[-1] = since
        return out

    def _leg_target(self, action: np.ndarray) -> np.ndarray:
        """The leg servos' joint targets for `action` (model radians, with the episode's calibration error)."""
        q = robot.action_to_leg_rad(action, self.cfg.action_scale_deg)
        q += self._episode.calibration
        return q

    def _make_frame(self, reset: bool = False) -> np.ndarray:
        cfg, idx = self.cfg, self.idx
        sens = self._sens
        if not reset and self._steps % self._imu_hold:
            imu = self.last_imu                  # no new sample this step: the policy sees the last one again
        else:
            imu = self._read_imu(reset)
        self.last_imu = imu                      # what a real IMU would have reported this step
        accel, gyro = imu[:3], imu[3:]
        gravity = self._gravity.reset(accel) if reset else self._gravity(accel, gyro)
        ultra = float(sens[idx.ultrasonic]) if cfg.obs.ultrasonic else None
        return build_frame(self._frame, gravity, gyro, self._command, self.phase, ultra, self._commands.current)

    def _read_imu(self, reset: bool) -> list[float]:
        """A new IMU sample (accel m/s^2, gyro rad/s), `imu_delay` physics steps old, with the episode's
        bias and noise, the accelerometer clipped at its range. (Six scalars: Python floats are cheaper
        than numpy's small-array calls, and the arithmetic is the same float64.)"""
        idx = self.idx
        raw = self._imu_raw if self._imu_raw is not None else self._sens[idx.accel.start:idx.gyro.stop].tolist()
        if reset:
            # Episodes start from a still, standing robot (as the real one does after its start-up
            # move), whose accelerometer reads +g along world up; the just-reset simulation is in a
            # brief free fall with the feet 0.5 mm above the floor and would read nearly nothing.
            raw = (GRAVITY * self._xmat[idx.torso_body, 6:9]).tolist() + raw[3:]
        episode = self._episode
        bias = episode.imu_bias
        if episode.imu_noise is not None:
            if self._noise_i >= len(self._noise_rows):
                self._noise_rows = (self.np_random.standard_normal((64, 6)) * episode.imu_noise).tolist()
                self._noise_i = 0
            noise = self._noise_rows[self._noise_i]
            self._noise_i += 1
            ax, ay, az, gx, gy, gz = [r + b + n for r, b, n in zip(raw, bias, noise)]
        else:
            ax, ay, az, gx, gy, gz = [r + b for r, b in zip(raw, bias)]
        hi = self._accel_max                      # the accelerometer's range
        return [min(max(ax, -hi), hi), min(max(ay, -hi), hi), min(max(az, -hi), hi), gx, gy, gz]

    def _wrap_obs(self, vec: np.ndarray):
        if self.cfg.obs.episode_physics:
            vec = np.concatenate([vec, np.clip(self.privileged(), -OBS_CLIP, OBS_CLIP)])
        if not self.cfg.use_camera:
            return vec
        return {"image": self.camera_image(), "state": vec}

    def _metrics(self, v_fwd: float, v_lat: float) -> dict[str, Any]:
        x, y = self._qpos[0:2].tolist()
        dx, dy = x - self._start_pos[0], y - self._start_pos[1]
        hx, hy = self._heading
        dist = dx * hx + dy * hy
        dyaw = (_yaw(self._qpos[3:7]) - self._start_yaw + math.pi) % (2 * math.pi) - math.pi
        t = self._steps * self.dt
        return {"forward_distance": dist, "forward_speed": v_fwd, "lateral_speed": v_lat,
                "mean_forward_speed": dist / t if t > 0 else 0.0, "lateral_drift": dy * hx - dx * hy,
                "heading_change_deg": math.degrees(dyaw), "phase": self.phase}


def _yaw(quat: np.ndarray) -> float:
    """Heading (rad) of a (w, x, y, z) quaternion."""
    w, x, y, z = quat.tolist()
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


# `gymnasium.make("PiDog-v2", randomize=False, history=3, ...)`: keyword -> setting path in EnvConfig.
KEYWORD_SHORTCUTS = {
    "randomize": "randomization.enabled", "ultrasonic": "obs.ultrasonic", "history": "obs.history",
    "use_camera": "use_camera",
    "camera_size": "camera_size", "episode_seconds": "episode_seconds", "render_size": "render_size",
}


def observation_space(cfg: EnvConfig) -> spaces.Space:
    """PiDog-v2's observation space for `cfg`, without building the env."""
    size = actor_obs_size(cfg)
    vec = spaces.Box(-OBS_CLIP, OBS_CLIP, (size,), np.float32)
    if not cfg.use_camera:
        return vec
    s = cfg.camera_size
    return spaces.Dict({"image": spaces.Box(0, 255, (3, s, s), np.uint8), "state": vec})


def actor_obs_size(cfg: EnvConfig) -> int:
    """The observation vector's size: the frames, then the teacher's privileged input if it has one."""
    frames = frame_size(cfg.obs.ultrasonic, cfg.command.enabled) * (cfg.obs.history + 1)
    return frames + (PRIVILEGED_SIZE if cfg.obs.episode_physics else 0)


def action_space(cfg: EnvConfig | None = None) -> spaces.Box:
    """PiDog-v2's action space: normalized leg joint targets."""
    return spaces.Box(-1.0, 1.0, (robot.N_LEG,), np.float32)
