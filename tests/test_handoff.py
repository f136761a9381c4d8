"""Pins the algorithm: HandoffPPO with the hand-off off is SB3's PPO, its schedules, the reward
normalizer's JSON round trip, and the BC batch iterator."""

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from pidog_env import config_tree
from pidog_env.config import EnvConfig
from training.common import make_env
from training.demos import ShuffledBatches
from training.handoff_ppo import HandoffPPO, RewardNormalizer

SHORT = config_tree.apply(EnvConfig(), "episode_seconds", 1.0)


def one_update(cls, steps=128, **kw):
    venv = DummyVecEnv([lambda: make_env(SHORT)] * 2)
    model = cls("MlpPolicy", venv, n_steps=64, batch_size=32, n_epochs=3, seed=3, device="cpu",
                policy_kwargs={"net_arch": [32, 32]}, **kw)
    if steps:
        model.learn(steps)
    venv.close()
    return model


@pytest.mark.parametrize("extra", [{}, {"clip_range_vf": 0.05}, {"target_kl": 0.001}])
def test_handoff_ppo_with_the_handoff_off_is_sb3_ppo(extra):
    ref, ours = one_update(PPO, **extra), one_update(HandoffPPO, **extra)
    a, b = ref.policy.state_dict(), ours.policy.state_dict()
    start = one_update(PPO, steps=0, **extra).policy.state_dict()
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], start[k]) for k in a)            # the update really moved the weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert ref._n_updates == ours._n_updates


def test_value_clipping_changes_the_update():
    plain, clipped = one_update(HandoffPPO), one_update(HandoffPPO, clip_range_vf=0.001)
    vf = [k for k in plain.policy.state_dict() if k.startswith("value_net")]
    assert any(not torch.equal(plain.policy.state_dict()[k], clipped.policy.state_dict()[k]) for k in vf)


def test_warmup_ramp_and_bc_decay_schedules():
    venv = DummyVecEnv([lambda: make_env(SHORT)])
    demos = (np.zeros((10, 16), np.float32), np.zeros((10, 8), np.float32))
    m = HandoffPPO("MlpPolicy", venv, n_steps=64, batch_size=32, value_warmup_steps=100, actor_ramp_steps=200,
                   bc_coef=20.0, bc_decay_steps=400, bc_demos=demos, device="cpu")
    expected = {0: (0.0, 20.0), 99: (0.0, 20 * (1 - 99 / 400)), 100: (0.0, 15.0), 200: (0.5, 10.0),
                300: (1.0, 5.0), 10_000: (1.0, 0.0)}
    for steps, (scale, weight) in expected.items():
        m.num_timesteps = steps
        assert m.actor_lr_scale() == pytest.approx(scale) and m.bc_weight() == pytest.approx(weight), steps
    names = [g["name"] for g in m.policy.optimizer.param_groups]
    assert names == ["actor", "critic"]
    m.num_timesteps = 150
    m._current_progress_remaining = 1.0
    from stable_baselines3.common.logger import configure
    m.set_logger(configure(None, [""]))
    m._update_learning_rate(m.policy.optimizer)
    lrs = {g["name"]: g["lr"] for g in m.policy.optimizer.param_groups}
    assert lrs == {"actor": pytest.approx(3e-4 * 0.25), "critic": pytest.approx(3e-4)}
    no_demos = HandoffPPO("MlpPolicy", venv, bc_coef=20.0, device="cpu")
    assert no_demos.bc_weight() == 0.0                      # no demonstrations -> no BC loss
    venv.close()


def test_reward_normalizer_statistics_round_trip_through_json(tmp_path):
    venv = RewardNormalizer.wrap(DummyVecEnv([lambda: make_env(SHORT)]), gamma=0.99)
    venv.reset()
    for _ in range(30):
        venv.step(np.zeros((1, 8), np.float32))
    RewardNormalizer.save(venv, tmp_path)
    restored = RewardNormalizer.wrap(DummyVecEnv([lambda: make_env(SHORT)]), gamma=0.99, restore_from=tmp_path)
    for attr in ("mean", "var", "count"):
        assert float(getattr(restored.ret_rms, attr)) == float(getattr(venv.ret_rms, attr)), attr
    assert float(venv.ret_rms.count) > 1
    venv.close()
    restored.close()


@pytest.mark.parametrize("n,batch", [(1000, 512), (1024, 256), (7, 3), (5, 5)])
def test_batch_iterator_covers_every_row_each_epoch_in_full_batches(n, batch):
    obs = np.arange(n, dtype=np.float32)[:, None]
    batches = ShuffledBatches(obs, obs.copy(), batch, seed=0)
    seen_epochs = []
    for _ in range(3):
        rows = [b["obs"][:, 0].astype(int) for b in batches]
        assert len(rows) == len(batches) == -(-n // batch)
        assert all(len(r) == batch for r in rows)
        flat = np.concatenate(rows)
        assert set(flat.tolist()) == set(range(n))
        counts = np.bincount(flat, minlength=n)
        assert counts.max() <= 2 and (counts == 2).sum() == len(batches) * batch - n   # only fill-up rows repeat
        seen_epochs.append(flat)
    if n > batch:
        assert not np.array_equal(seen_epochs[0], seen_epochs[1])  # reshuffled each epoch


