"""The command task: seeded command sampling, the command in the observation, the commanded trot."""

from __future__ import annotations

import numpy as np
import pytest

from pidog_env.config import EnvConfig
from pidog_env.config_tree import apply
from pidog_env.env import PiDogEnv, observation_space
from pidog_env.gaits import TrotGait
from pidog_env.observation import CMD_VX_SCALE, CMD_WZ_SCALE


def command_cfg(**settings) -> EnvConfig:
    cfg = apply(EnvConfig(), "command.enabled", True)
    for key, value in settings.items():
        cfg = apply(cfg, key.replace("__", "."), value)
    return cfg


def commands_seen(cfg: EnvConfig, seed: int, steps: int) -> list[tuple[float, float]]:
    env = PiDogEnv(cfg)
    env.reset(seed=seed)
    seen = [env.command]
    for _ in range(steps):
        env.step(np.zeros(8, dtype=np.float32))
        seen.append(env.command)
    return seen


def test_command_sampling_is_seeded_reproducible_and_renewed_mid_episode():
    cfg = command_cfg(randomization__enabled=False, command__resample_s=(0.2, 0.4), command__zero_share=0.3)
    a, b, c = commands_seen(cfg, 3, 150), commands_seen(cfg, 3, 150), commands_seen(cfg, 4, 150)
    assert a == b and a != c
    distinct = list(dict.fromkeys(a))
    assert len(distinct) >= 5                                   # 3 s of 0.2-0.4 s commands
    for vx, wz in distinct:
        assert 0.0 <= vx <= 0.12 and -0.5 <= wz <= 0.5


def test_zero_share_and_ranges_over_many_episodes():
    cfg = command_cfg(randomization__enabled=False, command__zero_share=0.25, command__vx_range=(0.05, 0.1))
    env = PiDogEnv(cfg)
    firsts = []
    for seed in range(200):
        env.reset(seed=seed)
        firsts.append(env.command)
    zeros = sum(c == (0.0, 0.0) for c in firsts)
    assert 30 <= zeros <= 70                                    # 25 % of 200, binomial +- 3.5 sigma
    assert all(0.05 <= vx <= 0.1 for vx, _ in firsts if (vx, _) != (0.0, 0.0))


def test_the_command_is_in_the_observation_scaled_and_changes_with_the_next_step():
    cfg = command_cfg(randomization__enabled=False, command__resample_s=(0.1, 0.1))
    env = PiDogEnv(cfg)
    assert observation_space(cfg).shape == (18,) and env.obs_layout["command"] == slice(16, 18)
    obs, _ = env.reset(seed=0)
    for _ in range(12):
        vx, wz = env.command
        assert obs[16] == pytest.approx(vx * CMD_VX_SCALE, abs=1e-6)
        assert obs[17] == pytest.approx(wz * CMD_WZ_SCALE, abs=1e-6)
        obs, _, _, _, info = env.step(np.zeros(8, dtype=np.float32))
        assert (info["command_vx"], info["command_wz"]) == (vx, wz)   # the command this step acted on


def test_reset_option_fixes_the_command_and_bad_values_are_refused():
    env = PiDogEnv(command_cfg(command__resample_s=(0.1, 0.1)))
    env.reset(seed=0, options={"command": (0.05, -0.2)})
    for _ in range(50):
        env.step(np.zeros(8, dtype=np.float32))
    assert env.command == (0.05, -0.2)
    with pytest.raises(ValueError, match="command"):
        env.reset(seed=0, options={"command": (float("nan"), 0.0)})


def test_forward_task_is_unchanged_by_the_command_settings():
    env = PiDogEnv(EnvConfig())
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(8, dtype=np.float32))
    assert obs.shape == (16,) and env.command is None and "command_vx" not in info
    assert info["reward_terms"]["track_vx"] == 0.0 and info["reward_terms"]["stand_still"] == 0.0


def rollout(cfg: EnvConfig, command: tuple[float, float], seconds: float = 8.0, seed: int = 0) -> dict:
    env = PiDogEnv(apply(cfg, "episode_seconds", seconds))
    trot = TrotGait.for_env(env)
    obs, _ = env.reset(seed=seed, options={"command": command})
    terms = {"track_vx": 0.0, "stand_still": 0.0, "forward": 0.0}
    while True:
        obs, _, terminated, truncated, info = env.step(trot(obs))
        for k in terms:
            terms[k] += info["reward_terms"][k]
        if terminated or truncated:
            return {**info, "terms": terms, "fell": terminated}


def test_the_commanded_trot_follows_speed_commands_and_turns_the_commanded_way():
    cfg = command_cfg(randomization__enabled=False)
    slow, fast, still = rollout(cfg, (0.06, 0.0)), rollout(cfg, (0.12, 0.0)), rollout(cfg, (0.0, 0.0))
    assert abs(slow["mean_vx"] - 0.06) <= 0.015 and abs(fast["mean_vx"] - 0.12) <= 0.015
    assert abs(still["mean_vx"]) <= 0.02 and not (slow["fell"] or fast["fell"] or still["fell"])
    left, right = rollout(cfg, (0.0, 0.4)), rollout(cfg, (0.0, -0.4))
    assert left["mean_wz"] > 0.1 and right["mean_wz"] < -0.1
    # tracking replaces the forward term; standing still is asked only under the zero command
    assert fast["terms"]["forward"] == 0.0 and fast["terms"]["track_vx"] > 0
    assert still["terms"]["stand_still"] < 0 and fast["terms"]["stand_still"] == 0.0
    assert 0 < fast["mean_vx_error"] < 0.1 and 0 < fast["mean_wz_error"] < 1.0


# ---------------------------------------------------------------- the robot runtime's command sources
def command_spec():
    from training.export import spec_for
    return spec_for(command_cfg(), "test")


def recording_policy(seen: list):
    def act(obs):
        seen.append(np.array(obs, copy=True))
        return np.zeros(8, dtype=np.float32)
    return act


def test_a_key_press_reaches_the_policy_input_within_one_control_step():
    import os
    import pty

    from deploy.commands import KeyboardSource
    from deploy.hardware import MujocoHardware
    from deploy.runtime import ControlLoop
    spec = command_spec()
    lo = spec.frame_layout["command"][0]
    master, slave = pty.openpty()
    keys = KeyboardSource(spec.command_vx_range, spec.command_wz_range, fd=slave)
    seen: list = []
    loop = ControlLoop(spec, recording_policy(seen), MujocoHardware(config=command_cfg()), realtime=False,
                       commands=keys)
    try:
        loop.start()
        assert loop.tick() and tuple(seen[-1][lo:lo + 2]) == (0.0, 0.0)
        for key, expected in ((b"w", (0.02, 0.0)), (b"w", (0.04, 0.0)), (b"\x1b[D", (0.04, 0.1)),
                              (b"d", (0.04, 0.0)), (b"\x1b[B", (0.02, 0.0)), (b" ", (0.0, 0.0))):
            os.write(master, key)
            assert loop.tick()                           # the very next tick's observation carries it
            got = seen[-1][lo:lo + 2] / np.array([CMD_VX_SCALE, CMD_WZ_SCALE])
            np.testing.assert_allclose(got, expected, atol=1e-6)
        assert loop.hw.base.command == (0.0, 0.0)        # the simulated robot follows the operator's command
        os.write(master, b"q")
        assert not loop.tick() and loop.stopped.kind == "done" and "quit" in loop.stopped.message
    finally:
        keys.close()
        os.close(master)
        os.close(slave)


def test_keys_are_clipped_to_the_policys_command_ranges():
    import os
    import pty

    from deploy.commands import KeyboardSource
    master, slave = pty.openpty()
    keys = KeyboardSource((0.0, 0.12), (-0.5, 0.5), fd=slave)
    os.write(master, b"w" * 20 + b"s" * 2 + b"a" * 9 + b"x")    # x: a key that is not used
    assert keys.poll() == pytest.approx((0.08, 0.5))
    os.write(master, b"s" * 20 + b"\x1b[C" * 20)
    assert keys.poll() == pytest.approx((0.0, -0.5))
    keys.close()
    os.close(master)
    os.close(slave)


def test_log_and_replay_round_trip_the_commands(tmp_path):
    from deploy.commands import FixedSource, ReplaySource
    from deploy.hardware import MujocoHardware
    from deploy.replay import replay
    from deploy.runtime import ControlLoop
    spec = command_spec()
    seen: list = []
    policy = recording_policy(seen)

    class Script(FixedSource):                      # a changing command: 0.03 m/s more every 10 ticks
        i = 0

        def poll(self):
            self.i += 1
            return (0.03 * (self.i // 10), 0.1 * (self.i % 3 - 1))
    loop = ControlLoop(spec, policy, MujocoHardware(config=command_cfg()), realtime=False, log=True,
                       commands=Script(0, 0))
    assert loop.run(seconds=0.6).kind == "done"
    loop.save_log(tmp_path / "run.npz")
    with np.load(tmp_path / "run.npz") as z:
        logged = z["commands"]
    assert len(logged) == 30 and len({tuple(c) for c in logged}) > 5
    assert replay(policy, tmp_path / "run.npz", spec) == 0.0   # commands in the log = commands in the observations
    # Driving a new run from the log's commands gives the same commands tick by tick.
    again: list = []
    loop2 = ControlLoop(spec, recording_policy(again), MujocoHardware(config=command_cfg()), realtime=False, log=True,
                        commands=ReplaySource(tmp_path / "run.npz"))
    loop2.run(seconds=0.6)
    np.testing.assert_allclose(np.asarray(loop2.log["commands"]), logged)
    # A log whose commands disagree with its observations is refused.
    with np.load(tmp_path / "run.npz") as z:
        data = {k: z[k] for k in z.files}
    data["commands"] = data["commands"] + 0.01
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ValueError, match="commands"):
        replay(policy, tmp_path / "bad.npz", spec)


def test_gamepad_sticks_map_to_the_command_ranges(monkeypatch):
    import sys
    import types

    from deploy.commands import GamepadSource
    codes = types.SimpleNamespace(EV_ABS=3, EV_KEY=1, ABS_X=0, ABS_Y=1, ABS_RX=3, BTN_SOUTH=304, BTN_EAST=305,
                                  BTN_START=315)
    info = types.SimpleNamespace(min=0, max=255)
    Event = types.SimpleNamespace

    class Device:
        name = "fake pad"

        def __init__(self, path):
            self.events = [Event(type=3, code=1, value=0), Event(type=3, code=3, value=255)]

        def capabilities(self):
            return {3: [(0, info), (1, info), (3, info)], 1: [304, 305]}

        def read_one(self):
            return self.events.pop(0) if self.events else None

        def close(self):
            pass
    fake = types.SimpleNamespace(ecodes=codes, InputDevice=Device, list_devices=lambda: ["/dev/input/event0"])
    monkeypatch.setitem(sys.modules, "evdev", fake)
    pad = GamepadSource((0.0, 0.12), (-0.5, 0.5))
    assert pad.poll() == pytest.approx((0.12, -0.5))       # stick fully forward, right stick fully right
    pad.dev.events = [Event(type=1, code=304, value=1)]
    assert pad.poll() == (0.0, 0.0) and not pad.quit       # A: stop
    pad.dev.events = [Event(type=1, code=305, value=1)]
    pad.poll()
    assert pad.quit                                        # B: lie down and quit


def test_runtime_cli_refuses_commands_it_cannot_use(tmp_path):
    from deploy.commands import make_source
    with pytest.raises(ValueError, match="--commands"):
        make_source("joystick", (0, 0.12), (-0.5, 0.5))
    with pytest.raises(ValueError, match="no such file"):
        make_source(str(tmp_path / "missing.npz"), (0, 0.12), (-0.5, 0.5))
    assert make_source("0.05,-0.2", (0, 0.12), (-0.5, 0.5)).poll() == (0.05, -0.2)
    assert make_source("0.5,-3", (0, 0.12), (-0.5, 0.5)).poll() == (0.12, -0.5)


@pytest.mark.slow
def test_a_command_policy_exports_with_parity_and_runs_in_the_runtime(tmp_path):
    from deploy.commands import FixedSource
    from training.export import export
    from deploy.hardware import MujocoHardware
    from deploy.policy_spec import PolicySpec
    from deploy.runtime import ControlLoop, OnnxPolicy
    from training import demos as demo_io
    from training.bc import train_bc
    from training.config import BCConfig, DemoConfig, PolicyConfig
    from training.policies import policy_meta, save_policy
    cfg = command_cfg()
    demo = demo_io.generate(DemoConfig(n_episodes=2, n_envs=1, noise=0.02), cfg, seed=0, progress=False)
    result = train_bc(demo, None, cfg, PolicyConfig(), BCConfig(epochs=5), tmp_path / "logs", seed=0, progress=False)
    save_policy(tmp_path / "bc.pth", result.policy, policy_meta(result.policy, PolicyConfig(), cfg))
    info = export(tmp_path / "bc.pth", tmp_path / "export", check_steps=100)
    assert info["max_abs_diff"] <= 1e-5
    spec = PolicySpec.load(tmp_path / "export" / "policy.json")
    assert spec.command and spec.obs_size == 18 and spec.frame_layout["command"] == [16, 18]
    assert spec.command_vx_range == list(cfg.command.vx_range)
    loop = ControlLoop(spec, OnnxPolicy(tmp_path / "export" / "policy.onnx", spec), MujocoHardware(config=cfg),
                       realtime=False, commands=FixedSource(0.1, 0.0))
    assert loop.run(seconds=1.0).kind == "done"
    assert loop.hw.base.command == (0.1, 0.0)


def test_viewer_teleop_keys_set_the_command_the_policy_sees_next():
    from training.viewer import ViewerTeleop
    cfg = command_cfg(randomization__enabled=False)
    keys = ViewerTeleop(cfg)
    for code in (265, 265, 263, 70):                     # up, up, left, and F (not a command key)
        keys.on_key(code)
    assert keys.command == pytest.approx((0.04, 0.1))
    env = PiDogEnv(cfg)
    env.reset(seed=0)
    env.set_command(*keys.command)
    obs, *_ = env.step(np.zeros(8, dtype=np.float32))
    assert obs[16:18] == pytest.approx([0.04 * CMD_VX_SCALE, 0.1 * CMD_WZ_SCALE])
    keys.on_key(32)
    assert keys.command == (0.0, 0.0)
    with pytest.raises(ValueError, match="command task"):
        PiDogEnv(EnvConfig()).set_command(0.1, 0.0)


def test_command_task_clips_draw_the_commanded_and_measured_velocity():
    from training.visualization import CMD_COLOR, PANEL, record_episode
    cfg = command_cfg(randomization__enabled=False, command__zero_share=0.0, command__vx_range=(0.1, 0.1))
    frames, _ = record_episode(TrotGait.for_config(cfg), cfg, seed=0, max_steps=30)
    panel = frames[-1][-PANEL - 4:, :PANEL + 4].astype(int)
    green = (np.abs(panel - np.array(CMD_COLOR)).sum(axis=-1) < 60).sum()
    assert green > 40                                   # the commanded forward arrow (and its label)
    forward, _ = record_episode(TrotGait.for_config(EnvConfig()), EnvConfig(), seed=0, max_steps=30)
    plain = forward[-1][-PANEL - 4:, :PANEL + 4].astype(int)
    assert (np.abs(plain - np.array(CMD_COLOR)).sum(axis=-1) < 60).sum() < green / 4   # no panel: forward task
