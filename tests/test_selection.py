"""The model a run ships: the fastest evaluated model under the fall-rate limit."""

import json
from types import SimpleNamespace

import numpy as np
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


def episodes(speed: float, falls: int, n: int) -> list[dict]:
    """`n` evaluation episodes at `speed`, the first `falls` of them falls."""
    return [{"return": 900.0 + 1000 * speed, "mean_forward_speed": speed, "forward_distance": 20 * speed,
             "fell": i < falls, "length": 1000} for i in range(n)]


class Scripted:
    """An evaluate(policy, seed, n) that serves per-seed episodes: the evaluation's (seeds from BASE) and
    the confirmation's (seeds after them), from whatever `plan` says for the current step."""
    BASE, N = 10_000, 50

    def __init__(self, plan: dict[int, tuple]):
        self.plan, self.asked, self.cb = plan, [], None

    def __call__(self, policy, seed: int, n: int) -> list[dict]:
        self.asked.append((self.cb.num_timesteps, seed - self.BASE, n))
        own, more = self.plan[self.cb.num_timesteps]
        eps = own + (more or [])
        return eps[seed - self.BASE: seed - self.BASE + n]


def _callback(tmp_path, plan, history=None, confirm=0):
    exp = _Exp(tmp_path)
    evaluate = Scripted(plan)
    cb = EvalCallback(evaluate, 25_000, exp, {}, history or [], 0.02, Scripted.N, confirm, Scripted.BASE)
    evaluate.cb = cb
    cb.model = SimpleNamespace(policy=None, logger=_Logger())
    return cb, exp, evaluate


@pytest.mark.parametrize("resume_at", [0, 2])
def test_eval_callback_saves_best_model_only_when_the_new_evaluation_is_selected(tmp_path, resume_at):
    plan = {h["timesteps"]: (episodes(h["mean_forward_speed"], round(h["fall_rate"] * Scripted.N), Scripted.N), None)
            for h in HISTORY}
    earlier = [dict(h, episodes=Scripted.N) for h in HISTORY[:resume_at]]
    cb, exp, _ = _callback(tmp_path, plan, earlier)
    for h in HISTORY[resume_at:]:
        cb.num_timesteps = h["timesteps"]
        cb._run()
    assert exp.saved == [t for t in (0, 25_000, 75_000) if t >= HISTORY[resume_at]["timesteps"]]
    assert cb.selected["timesteps"] == 75_000
    saved = json.loads((tmp_path / "evaluations.json").read_text())
    assert [h["timesteps"] for h in saved] == [h["timesteps"] for h in HISTORY]
    assert saved[-1]["fell"] == [False] * Scripted.N and saved[-1]["scores"] == [0.17] * Scripted.N


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
    n, c = Scripted.N, 70
    plan = {0: (episodes(0.12, 0, n), episodes(0.12, 0, c)),                  # holds
            25_000: (episodes(0.15, 0, n), episodes(0.15, 0, c)),             # holds
            50_000: (episodes(0.19, 5, n), None),                             # falls on its own episodes
            75_000: (episodes(0.17, 0, n), episodes(0.17, 7, c)),             # lucky: 7 falls in its confirmation
            100_000: (episodes(0.16, 0, n), episodes(0.16, 0, c))}            # holds
    cb, exp, evaluate = _callback(tmp_path, plan, confirm=c)
    for h in HISTORY:
        cb.num_timesteps = h["timesteps"]
        cb._run()
    confirmed = sorted({t for t, offset, _ in evaluate.asked if offset >= n})
    assert confirmed == [0, 25_000, 75_000, 100_000]              # 50k falls on its own episodes: never asked
    assert exp.saved == [0, 25_000, 100_000]
    assert cb.selected["timesteps"] == 100_000
    saved = json.loads((tmp_path / "evaluations.json").read_text())
    assert "confirmation" not in saved[2]
    lucky = saved[3]["confirmation"]                              # stopped at the chunk with its 3rd fall
    assert lucky["curtailed"] == "falls" and lucky["episodes"] == n + 16 and sum(lucky["fell"]) == 7
    held = saved[4]["confirmation"]
    assert "curtailed" not in held and held["episodes"] == n + c and held["fall_rate"] == 0
    assert cb.confirmation_episodes == {"run": 3 * c + 16, "skipped": c - 16}
    # the chunks of a confirmation are consecutive seeds after the evaluation's own
    assert [(o, k) for t, o, k in evaluate.asked if t == 100_000] == [(0, n), (n, 16), (n + 16, 16), (n + 32, 16),
                                                                    (n + 48, 16), (n + 64, 6)]


def test_a_confirmation_that_cannot_beat_the_selection_stops_early(tmp_path):
    n, c = Scripted.N, 70
    rng = np.random.default_rng(0)

    def noisy(mean, count):
        return [dict(e, mean_forward_speed=float(mean + 0.005 * rng.standard_normal())) for e in episodes(mean, 0, count)]
    plan = {0: (noisy(0.150, n), noisy(0.150, c)),
            25_000: (noisy(0.153, n), noisy(0.120, c))}   # its own look beats 0.150; the rest runs at 0.12
    cb, exp, evaluate = _callback(tmp_path, plan, confirm=c)
    for t in (0, 25_000):
        cb.num_timesteps = t
        cb._run()
    last = cb.history[-1]
    assert last["mean_forward_speed"] > cb.history[0]["confirmation"]["mean_forward_speed"]
    assert last["confirmation"]["curtailed"] == "score" and last["confirmation"]["episodes"] < n + c
    assert cb.selected["timesteps"] == 0 and exp.saved == [0]


def test_curtail_falls_is_certain_and_score_needs_a_small_chance():
    from training.selection import curtail
    # 3 falls over 100 episodes exceed 2 % whatever comes next; 2 do not
    assert curtail([0.1] * 40, 3, 100, None, 0.02) == "falls"
    assert curtail([0.1] * 40, 2, 100, None, 0.02) is None
    # no selection yet: nothing to beat
    assert curtail([0.1] * 40, 0, 100, None, 0.02) is None
    scores = [0.15 + 0.01 * ((-1) ** i) for i in range(40)]            # mean 0.15, sd 0.01
    assert curtail(scores, 0, 100, 0.20, 0.02) == "score"                # 60 more at 0.23 on average: hopeless
    assert curtail(scores, 0, 100, 0.151, 0.02) is None                  # within reach
    assert curtail(scores, 0, 40, 0.149, 0.02) is None                   # nothing left to run


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


def test_a_few_hard_episodes_do_not_reject_a_model_its_confirmation_clears(tmp_path):
    """2 falls in 50 evaluation episodes (4 %) fit 2 % of the 120 pooled ones: the evaluation is confirmed
    and selected when its confirmation adds no fall, rejected when it adds one; 3 falls cannot fit and are
    never confirmed. Without confirmations, 2 falls in 50 are over the limit as before."""
    n, c = Scripted.N, 70
    plan = {0: (episodes(0.12, 0, n), episodes(0.12, 0, c)),
            25_000: (episodes(0.15, 2, n), episodes(0.15, 0, c)),       # 2 of 120: holds
            50_000: (episodes(0.17, 2, n), episodes(0.17, 1, c)),       # 3 of 120: rejected
            75_000: (episodes(0.19, 3, n), None)}                       # cannot fit: not confirmed
    cb, exp, evaluate = _callback(tmp_path, plan, confirm=c)
    for t in plan:
        cb.num_timesteps = t
        cb._run()
    assert sorted({t for t, offset, _ in evaluate.asked if offset >= n}) == [0, 25_000, 50_000]
    assert exp.saved == [0, 25_000] and cb.selected["timesteps"] == 25_000
    assert cb.history[1]["confirmation"]["fall_rate"] == pytest.approx(2 / 120)
    assert cb.history[2]["confirmation"]["curtailed"] == "falls"
    cb, exp, evaluate = _callback(tmp_path, plan, confirm=0)
    for t in plan:
        cb.num_timesteps = t
        cb._run()
    assert exp.saved == [0] and all(offset == 0 for _, offset, _ in evaluate.asked)
