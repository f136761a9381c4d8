"""What a run prints and reports: timestamped log lines, the one-line figures of an evaluation, and the
summary of the model selected for export. Every stage (BC, PPO, off-policy) reports through here."""

from __future__ import annotations

import time
from typing import Any

from pidog_env.evaluation import tracking_text
from training.config import PipelineConfig
from training.evaluation import FINAL_EVAL_SEED_BASE, evaluate_policy
from training.experiment import Experiment
from training.selection import selection_figures


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def figures(ev: dict[str, Any]) -> str:
    return (f"return {ev['mean_return']:.1f}, speed {ev['mean_forward_speed']:.3f} m/s, "
            f"falls {ev['fall_rate']:.0%}{tracking_text(ev)}")


def selected_summary(cfg: PipelineConfig, exp: Experiment, chosen: dict | None, pool: Any = None,
                     last: tuple[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The model to export: the evaluated model selected by speed under the fall-rate limit, evaluated on
    the final episodes (None when no evaluation met the limit). `last`: (steps, final figures) of the
    last model; when the selection is that model, its final figures are not computed again."""
    r = cfg.rl
    if chosen is None or not (exp / Experiment.BEST_MODEL).is_file():
        log(f"no evaluation had at most {r.select_max_fall_rate:.0%} falls: no best_model.zip; export "
            f"{exp / Experiment.FINAL_MODEL} only if its falls are acceptable")
        return {"model": None, "max_fall_rate": r.select_max_fall_rate}
    if last is not None and last[0] == chosen["timesteps"]:
        ev = last[1]                                        # the same model on the same episodes
    else:
        from training.policies import load_policy  # torch-heavy; only when a model was selected
        policy, _ = load_policy(exp / Experiment.BEST_MODEL)
        ev = evaluate_policy(policy, cfg.env, r.final_eval_episodes, FINAL_EVAL_SEED_BASE, randomize=True,
                             pool=pool)
    seen = selection_figures(chosen)
    log(f"selected: {exp / Experiment.BEST_MODEL} (evaluated at {chosen['timesteps']:,} steps on {seen['episodes']} "
        f"episodes: {seen['mean_forward_speed']:.3f} m/s, {seen['fall_rate']:.0%} falls); on the final episodes: "
        f"{figures(ev)}; export it with: pidog export --model {exp / Experiment.BEST_MODEL}")
    return {"model": str(exp / Experiment.BEST_MODEL), "timesteps": chosen["timesteps"], "eval": chosen,
            "max_fall_rate": r.select_max_fall_rate, "final_eval": {k: v for k, v in ev.items() if k != "per_episode"}}
