"""The model a run ships: the fastest evaluated model under the fall-rate limit."""

import json
from types import SimpleNamespace

import pytest

from training.callbacks import EvalCallback
from training.selection import select

HISTORY = [  # a synthetic evaluation history: BC at step 0, then faster but sometimes falling
    {"timesteps": 0, "mean_forward_speed": 0.12, "fall_rate": 0.0, "mean_return": 900.0, "mean_length": 1000},
    {"timesteps": 25_000, "mean_forward_speed": 0.15, "fall_rate": 0.0, "mean_return": 1000.0, "mean_length": 1000},
    {"timesteps": 50_000, "mean_forward_speed": 0.19, "fall_rate": 0.1, "mean_return": 1100.0, "mean_length": 1000},   # fast, falls
    {"timesteps": 75_000, "mean_forward_speed": 0.17, "fall_rate": 0.02, "mean_return": 1050.0, "mean_length": 1000},
    {"timesteps": 100_000, "mean_forward_speed": 0.17, "fall_rate": 0.0, "mean_return": 1060.0, "mean_length": 1000},  # equal: earlier wins
]


def test_select_picks_the_fastest_evaluation_within_the_fall_limit():
    assert select(HISTORY, 0.02) == 3
    assert select(HISTORY, 0.0) == 4
    assert select(HISTORY, 0.1) == 2
    assert select([{"mean_forward_speed": 0.3, "fall_rate": 0.5}], 0.02) is None
    assert select([], 0.02) is None


class _Logger:
    def record(self, *a):
        pass

    def dump(self, *a):
        pass


class _Exp:
    def __init__(self, root):
        self.root, self.saved = root, []

    def __truediv__(self, name):
        return self.root / name

    def save_model(self, model, path, meta):
        self.saved.append(meta["selected_at_timesteps"])


@pytest.mark.parametrize("resume_at", [0, 2])
def test_eval_callback_saves_best_model_only_when_the_new_evaluation_is_selected(tmp_path, resume_at):
    exp = _Exp(tmp_path)
    queue = iter([dict(h) for h in HISTORY[resume_at:]])
    cb = EvalCallback(lambda policy: next(queue), 25_000, exp, {}, [dict(h) for h in HISTORY[:resume_at]], 0.02)
    cb.model = SimpleNamespace(policy=None, logger=_Logger())
    for h in HISTORY[resume_at:]:
        cb.num_timesteps = h["timesteps"]
        cb._run()
    assert exp.saved == [t for t in (0, 25_000, 75_000) if t >= HISTORY[resume_at]["timesteps"]]
    assert cb.selected["timesteps"] == 75_000
    assert [h["timesteps"] for h in json.loads((tmp_path / "evaluations.json").read_text())] == [h["timesteps"] for h in HISTORY]


def test_a_confirmed_evaluation_qualifies_and_ranks_by_its_pooled_figures():
    from training.selection import pooled
    lucky = {"timesteps": 50_000, "episodes": 30, "mean_forward_speed": 0.19, "fall_rate": 0.0}
    more = {"episodes": 70, "mean_forward_speed": 0.18, "fall_rate": 0.1, "timesteps": 50_000}
    both = pooled(lucky, more)
    assert both["episodes"] == 100 and both["fall_rate"] == pytest.approx(0.07)
    assert both["mean_forward_speed"] == pytest.approx(0.183) and "timesteps" not in both
    history = [dict(HISTORY[1], episodes=30), dict(lucky, confirmation=both)]
    assert select(history, 0.02) == 0 and select(history, 0.1) == 1
    # ranks by the pooled speed: a confirmed 0.16 loses to an unconfirmed 0.17
    history = [dict(HISTORY[4], episodes=30), dict(lucky, confirmation=dict(both, fall_rate=0.0, mean_forward_speed=0.16))]
    assert select(history, 0.02) == 0


def test_eval_callback_confirms_only_a_would_be_selection_and_saves_it_only_when_it_holds(tmp_path):
    exp = _Exp(tmp_path)
    queue = iter([dict(h, episodes=30) for h in HISTORY])
    confirmations = iter([{"episodes": 70, "mean_forward_speed": 0.12, "fall_rate": 0.0, "mean_return": 900.0,
                           "mean_length": 1000},                                           # step 0 holds
                          {"episodes": 70, "mean_forward_speed": 0.15, "fall_rate": 0.0, "mean_return": 1000.0,
                           "mean_length": 1000},                                           # 25k holds
                          {"episodes": 70, "mean_forward_speed": 0.17, "fall_rate": 0.1, "mean_return": 1000.0,
                           "mean_length": 900},                                            # 75k: lucky, rejected
                          {"episodes": 70, "mean_forward_speed": 0.16, "fall_rate": 0.0, "mean_return": 1000.0,
                           "mean_length": 1000}])                                          # 100k holds
    asked = []

    def confirm(policy):
        asked.append(cb.num_timesteps)
        return next(confirmations)
    cb = EvalCallback(lambda policy: next(queue), 25_000, exp, {}, [], 0.02, confirm)
    cb.model = SimpleNamespace(policy=None, logger=_Logger())
    for h in HISTORY:
        cb.num_timesteps = h["timesteps"]
        cb._run()
    assert asked == [0, 25_000, 75_000, 100_000]          # 50k falls on its own 30 episodes: never asked
    assert exp.saved == [0, 25_000, 100_000]
    assert cb.selected["timesteps"] == 100_000
    saved = json.loads((tmp_path / "evaluations.json").read_text())
    assert saved[3]["confirmation"]["fall_rate"] == pytest.approx((0.02 * 30 + 0.1 * 70) / 100) and "confirmation" not in saved[2]


def test_confirmation_seeds_stay_clear_of_the_final_evaluation():
    from training.config import ConfigError, PipelineConfig, validate
    from training.evaluation import EVAL_SEED_BASE, FINAL_EVAL_SEED_BASE
    cfg = PipelineConfig()
    assert EVAL_SEED_BASE + cfg.rl.eval_episodes + cfg.rl.confirm_episodes <= FINAL_EVAL_SEED_BASE
    cfg.rl.eval_episodes, cfg.rl.confirm_episodes = 2_000, 8_001
    with pytest.raises(ConfigError, match="confirm_episodes"):
        validate(cfg)


def test_training_fall_rate_is_pooled_over_episodes_not_rollouts():
    from training.callbacks import pooled_fall_rate
    rows = [{"timesteps": 2048, "fall_rate": 1.0, "episodes": 1}, {"timesteps": 4096, "fall_rate": 0.0, "episodes": 3},
            {"timesteps": 60_000, "fall_rate": 1.0, "episodes": 5}]
    assert pooled_fall_rate(rows, 50_000) == 0.25 and pooled_fall_rate(rows, 1000) is None


def test_in_the_command_task_selection_minimizes_the_tracking_error_within_the_fall_limit():
    history = [
        {"fall_rate": 0.0, "mean_forward_speed": 0.05, "mean_vx_error": 0.030, "mean_wz_error": 0.20},
        {"fall_rate": 0.0, "mean_forward_speed": 0.02, "mean_vx_error": 0.020, "mean_wz_error": 0.10},  # best
        {"fall_rate": 0.1, "mean_forward_speed": 0.04, "mean_vx_error": 0.010, "mean_wz_error": 0.05},  # falls
        {"fall_rate": 0.0, "mean_forward_speed": 0.09, "mean_vx_error": 0.040, "mean_wz_error": 0.09},
    ]
    assert select(history, 0.02) == 1 and select(history, 0.2) == 2
