"""Off-policy learning from demonstrations: the demonstrations' transitions and the 50/50 batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from pidog_env.config import EnvConfig
from training import demos as demo_io
from training.config import DemoConfig
from training.replay import DemoMixReplayBuffer


def buffer(ratio: float, decay: int = 0, online: int = 0) -> DemoMixReplayBuffer:
    obs_space = spaces.Box(-10, 10, (3,), np.float32)
    act_space = spaces.Box(-1, 1, (2,), np.float32)
    buf = DemoMixReplayBuffer(1000, obs_space, act_space, device="cpu", demo_ratio=ratio, decay_steps=decay)
    n = 50                                   # demonstration rows are marked by reward 1, online rows by 0
    buf.set_demos({"obs": np.ones((n, 3)), "next_obs": np.ones((n, 3)), "actions": np.zeros((n, 2)),
                   "rewards": np.ones(n), "dones": np.zeros(n)})
    for _ in range(online):
        buf.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    return buf


def test_every_batch_draws_the_requested_share_from_each_buffer():
    buf = buffer(0.5, online=200)
    for _ in range(5):
        batch = buf.sample(256)
        assert batch.observations.shape == (256, 3) and batch.rewards.shape == (256, 1)
        assert int(batch.rewards.sum()) == 128                   # exactly half the rows are demonstrations
    assert buf.drawn == {"demo": 640, "online": 640}
    assert int(buffer(0.25, online=200).sample(100).rewards.sum()) == 25


def test_the_demonstrations_fill_the_batch_until_online_data_exists_and_their_share_decays():
    assert int(buffer(0.5).sample(64).rewards.sum()) == 64            # nothing online yet
    buf = buffer(0.5, decay=400, online=200)                         # half way through the decay
    assert buf.current_ratio() == pytest.approx(0.25)
    assert int(buf.sample(200).rewards.sum()) == 50
    for _ in range(300):
        buf.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    assert buf.current_ratio() == 0.0 and int(buf.sample(64).rewards.sum()) == 0


def test_demonstrations_become_transitions_with_rewards_next_observations_and_falls():
    demo = demo_io.generate(DemoConfig(n_episodes=2, n_envs=1, noise=0.02), EnvConfig(episode_seconds=0.5), seed=0,
                            progress=False)
    t = demo.transitions()
    n = len(demo)
    assert t["obs"].shape == t["next_obs"].shape == (n, 16) and t["rewards"].shape == (n,)
    first = demo.episode_lengths[0]
    np.testing.assert_array_equal(t["next_obs"][: first - 1], t["obs"][1:first])   # within an episode
    np.testing.assert_array_equal(t["next_obs"][first - 1], demo.last_obs[0])       # its last step
    assert t["rewards"].sum() == pytest.approx(demo.episode_returns.sum(), rel=1e-5)
    assert t["dones"].sum() == demo.episode_falls.sum()                  # only falls end without bootstrapping
    assert t["ends"].sum() == 2 and t["ends"][first - 1] and t["ends"][-1]
    np.testing.assert_array_equal(t["actions"], demo.acts_executed)


def test_demonstration_rows_become_n_step_rows_that_stop_at_each_episode_end():
    from training.replay import n_step_rows
    g = 0.5
    # two episodes: rows 0-3 end by the time limit, rows 4-5 by a fall; rewards 1, 2, 3, ...
    t = {"obs": np.arange(6.0)[:, None], "next_obs": 10 + np.arange(6.0)[:, None], "actions": np.zeros((6, 1)),
         "rewards": np.arange(1.0, 7.0), "dones": np.array([0, 0, 0, 0, 0, 1.0]),
         "ends": np.array([0, 0, 0, 1, 0, 1], dtype=bool)}
    r = n_step_rows(t, 3, g)
    np.testing.assert_allclose(r["rewards"], [1 + g * 2 + g * g * 3, 2 + g * 3 + g * g * 4, 3 + g * 4, 4,
                                              5 + g * 6, 6])
    np.testing.assert_allclose(r["next_obs"][:, 0], [12, 13, 13, 13, 15, 15])   # never across an episode end
    np.testing.assert_allclose(r["discounts"], [g ** 3, g ** 3, g ** 2, g, g ** 2, g])
    np.testing.assert_allclose(r["dones"], [0, 0, 0, 0, 1, 1])                  # the fall stops bootstrapping
    one = n_step_rows(t, 1, g)                                                  # n = 1: the rows unchanged
    np.testing.assert_allclose(one["rewards"], t["rewards"])
    np.testing.assert_allclose(one["next_obs"], t["next_obs"])
    np.testing.assert_allclose(one["discounts"], g)


def test_online_and_demonstration_rows_carry_their_n_step_discounts_in_one_batch():
    obs_space = spaces.Box(-100, 100, (3,), np.float32)
    act_space = spaces.Box(-1, 1, (2,), np.float32)
    buf = DemoMixReplayBuffer(1000, obs_space, act_space, device="cpu", demo_ratio=0.5, n_steps=3, gamma=0.9)
    buf.set_demos({"obs": -np.ones((20, 3)), "next_obs": -np.ones((20, 3)), "actions": np.zeros((20, 2)),
                   "rewards": np.ones(20), "dones": np.zeros(20)})
    for i in range(50):                                        # one online episode so far, reward 0, obs = step
        buf.add(np.full((1, 3), i), np.full((1, 3), i + 1), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    batch = buf.sample(256)
    first = batch.observations[:, 0].numpy()
    disc, rew = batch.discounts[:, 0].numpy(), batch.rewards[:, 0].numpy()
    demo, online = first < 0, first >= 0
    assert demo.sum() == 128
    steps = np.round(np.log(disc) / np.log(0.9)).astype(int)    # reward steps each row sums
    np.testing.assert_allclose(rew[demo], [sum(0.9 ** k for k in range(m)) for m in steps[demo]], rtol=1e-6)
    assert (steps[demo] == 3).mean() > 0.8                        # all but the demonstration's last two rows
    # online: 3 steps, except where the data ends (row 49 alone, row 48 with 49); next obs m steps on
    np.testing.assert_array_equal(steps[online], np.minimum(3, 50 - first[online]))
    np.testing.assert_allclose(batch.next_observations[online, 0].numpy(), first[online] + steps[online])


def test_demonstration_files_keep_rewards_and_final_observations(tmp_path):
    demo = demo_io.generate(DemoConfig(n_episodes=2, n_envs=1, noise=0.0), EnvConfig(episode_seconds=0.3), seed=1,
                            progress=False)
    demo_io.save(demo, tmp_path / "d.npz")
    back = demo_io.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(back.rews, demo.rews)
    np.testing.assert_array_equal(back.last_obs, demo.last_obs)
    old = {k: v for k, v in np.load(tmp_path / "d.npz").items() if k not in ("rews", "last_obs")}
    np.savez(tmp_path / "old.npz", **old)                              # a file from before they were kept
    with pytest.raises(Exception, match="record them again"):
        demo_io.load(tmp_path / "old.npz").transitions()


def test_the_expert_takes_over_near_a_fall_and_hands_back_once_calm():
    from pidog_env.env import PiDogEnv
    from pidog_env.gaits import TrotGait
    from training.interventions import RELEASE_STEPS, ExpertIntervention
    env = ExpertIntervention(PiDogEnv(EnvConfig(), randomize=False))
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(8, dtype=np.float32))
    assert info["intervened"] is False                         # upright: the learner acts
    tilted = env.last_obs.copy()
    tilted[0:3] = [np.sin(np.deg2rad(30)), 0.0, -np.cos(np.deg2rad(30))]   # 30 deg nose-down
    env.last_obs = tilted
    _, _, _, _, info = env.step(np.zeros(8, dtype=np.float32))
    assert info["intervened"] and np.allclose(info["executed_action"], TrotGait.for_env(env.unwrapped)(tilted))
    steps = 0
    while info["intervened"] and steps < 200:                  # the trot walks on; calm hands control back
        _, _, _, _, info = env.step(np.zeros(8, dtype=np.float32))
        steps += 1
    assert not info["intervened"] and steps >= RELEASE_STEPS - 1


def test_the_learner_step_that_calls_the_expert_is_flagged_and_pays_the_penalty():
    from pidog_env.env import PiDogEnv
    from training.interventions import ExpertIntervention

    def run(penalty: float):
        env = ExpertIntervention(PiDogEnv(EnvConfig(), randomize=False), penalty=penalty)
        env.reset(seed=0)
        infos, rewards = [], []
        for _ in range(40):                                    # front legs one way, hind legs the other: it tips
            _, r, term, _, info = env.step(np.repeat(np.array([1.0, -1.0], np.float32), 4))
            infos.append(info)
            rewards.append(r)
            if term:
                break
        return infos, rewards

    infos, rewards = run(50.0)
    first = next(i for i, info in enumerate(infos) if info.get("takeover"))
    assert not infos[first]["intervened"] and infos[first + 1]["intervened"]   # the expert acts from the next step
    assert sum(bool(i.get("takeover")) for i in infos) == 1
    infos0, rewards0 = run(0.0)                                # deterministic: the same steps without the penalty
    assert infos0[first].get("takeover")
    assert rewards[first] == pytest.approx(rewards0[first] - 50.0)
    assert rewards[:first] == pytest.approx(rewards0[:first])


def test_intervention_steps_are_stored_with_the_executed_action_among_the_demonstrations():
    buf = buffer(0.5, online=10)
    expert_action = np.array([[0.3, -0.3]], dtype=np.float32)
    buf.add(np.full((1, 3), 2.0), np.full((1, 3), 2.0), np.array([[0.9, 0.9]]), np.array([5.0]), np.zeros(1),
            [{"intervened": True, "executed_action": expert_action[0]}])
    online = buf.actions[buf.pos - 1, 0]
    np.testing.assert_allclose(online, expert_action[0])        # the action that was executed, not the learner's
    buf.sample(8)                                               # merges the takeover into the demonstrations
    assert len(buf.demos["observations"]) == 51 and buf.intervention_rows == 1
    np.testing.assert_allclose(buf.demos["actions"][-1].numpy(), expert_action[0])
    assert float(buf.demos["rewards"][-1]) == 5.0


def test_the_intervention_rate_is_logged_per_window_and_summarized_by_phase():
    from training.interventions import InterventionLog
    log = InterventionLog(window=100)
    for t in range(1, 1001):
        log.record([{"intervened": t <= 200 and t % 2 == 0}], t)       # half the steps early, none later
    assert len(log.history) == 10
    assert log.rate_between(0.0, 0.2) == pytest.approx(0.5) and log.rate_between(0.8, 1.0) == 0.0


def test_a_synthetic_key_press_hands_the_next_control_step_to_the_expert():
    from pidog_env.env import PiDogEnv
    from pidog_env.gaits import TrotGait
    from training.interventions import TAKE_OVER_KEY, KeyboardIntervention
    env = KeyboardIntervention(PiDogEnv(EnvConfig(), randomize=False))
    assert env.unwrapped.key_callback == env.on_key              # the viewer's key callback
    obs, _ = env.reset(seed=0)
    learner = np.full(8, 0.3, dtype=np.float32)
    _, _, _, _, info = env.step(learner)
    assert not info["intervened"]
    before = env.last_obs
    env.unwrapped.key_callback(TAKE_OVER_KEY)                     # as MuJoCo's viewer calls it on Enter
    _, _, _, _, info = env.step(learner)
    assert info["intervened"]
    np.testing.assert_allclose(info["executed_action"], TrotGait.for_env(env.unwrapped)(before))
    assert not np.allclose(info["executed_action"], learner)
    env.unwrapped.key_callback(TAKE_OVER_KEY)
    assert not env.step(learner)[4]["intervened"]
    env.unwrapped.key_callback(70)                                # other keys do nothing
    assert not env.step(learner)[4]["intervened"]


@pytest.mark.slow
def test_keyboard_interventions_without_a_display_are_a_one_line_error(tmp_path):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "training.cli", "rl", "--algo", "sac", "--intervention", "keyboard",
                           "--timesteps", "1000", "--output-dir", str(tmp_path), "--experiment-name", "k"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: --intervention keyboard needs a display")
    assert not (tmp_path / "k").exists()
