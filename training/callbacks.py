"""SB3 callbacks: reward-term and metric logging, deterministic evaluation with best-model saving,
checkpoints that carry this project's metadata, and a clean stop on Ctrl-C / SIGTERM."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from pidog_env.evaluation import TRACKING_KEYS, tracking_text
from training.experiment import Experiment
from training.selection import pooled, select, selection_figures

EPISODE_METRICS = ("forward_distance", "mean_forward_speed", "lateral_drift", "heading_change_deg")


class MetricsCallback(BaseCallback):
    """Logs every reward term (per-episode sums) and the env's walking metrics for finished episodes;
    keeps per-rollout means for the dashboard in `training_episodes.json` (continued by --resume)."""

    def __init__(self, exp: Experiment | None = None, history: list[dict] | None = None) -> None:
        super().__init__()
        self.exp = exp
        self.history: list[dict[str, float]] = list(history or [])   # per-rollout means of training episodes

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        self._sums: list[dict[str, float]] = [defaultdict(float) for _ in range(n)]
        self._finished: list[dict[str, float]] = []
        if self.exp is not None:                     # the file exists (possibly empty) from the first step on
            self.exp.write_json(Experiment.TRAIN_EPISODES, self.history)

    def _on_step(self) -> bool:
        for i, (info, done) in enumerate(zip(self.locals["infos"], self.locals["dones"])):
            for k, v in info.get("reward_terms", {}).items():
                self._sums[i][k] += v
            if done:
                row = {f"reward_terms/{k}": v for k, v in self._sums[i].items()}
                row.update({f"episode/{k}": info[k] for k in EPISODE_METRICS if k in info})
                row["episode/fall"] = float(info.get("fell", False))
                if "episode" in info:                   # Monitor: undiscounted return and length
                    row["episode/return"] = float(info["episode"]["r"])
                    row["episode/length"] = float(info["episode"]["l"])
                self._finished.append(row)
                self._sums[i] = defaultdict(float)
        return True

    def _on_rollout_end(self) -> None:
        if not self._finished:
            return
        means = {key: float(np.mean([r[key] for r in self._finished if key in r])) for key in self._finished[0]}
        for key, value in means.items():
            self.logger.record(key, value)
        if "episode/return" in means:
            self.history.append({"timesteps": int(self.num_timesteps), "mean_return": means["episode/return"],
                                 "mean_forward_speed": means.get("episode/mean_forward_speed", 0.0),
                                 "mean_length": means["episode/length"], "fall_rate": means["episode/fall"],
                                 "episodes": len(self._finished)})
            if self.exp is not None:
                self.exp.write_json(Experiment.TRAIN_EPISODES, self.history)
        self._finished = []


def pooled_fall_rate(history: list[dict], until_steps: int) -> float | None:
    """Fraction of the training episodes that ended in a fall, over the rollouts up to `until_steps`
    (rows of `MetricsCallback.history`; None when no episode finished by then)."""
    rows = [h for h in history if h["timesteps"] <= until_steps and h.get("episodes")]
    episodes = sum(h["episodes"] for h in rows)
    return sum(h["fall_rate"] * h["episodes"] for h in rows) / episodes if episodes else None


class EvalCallback(BaseCallback):
    """Deterministic evaluation every `eval_freq` env steps (and before training starts).

    Writes `evaluations.json` (a history that survives --resume) and saves `best_model.zip` whenever the
    new evaluation becomes the selection (`training.selection`: the fastest evaluated model whose fall
    rate is at most `max_fall_rate`). `evaluate` maps a policy to a summary dict with mean_return,
    mean_forward_speed and fall_rate. With `confirm` (the same on more, disjoint episodes), an evaluation
    that would become the selection is confirmed first: its pooled figures decide.
    """

    def __init__(self, evaluate: Callable[[Any], dict[str, float]], eval_freq: int, exp: Experiment,
                 meta: dict[str, Any], history: list[dict] | None = None, max_fall_rate: float = 0.02,
                 confirm: Callable[[Any], dict[str, float]] | None = None) -> None:
        super().__init__()
        self.evaluate, self.eval_freq, self.exp, self.meta = evaluate, eval_freq, exp, meta
        self.confirm = confirm
        self.max_fall_rate = max_fall_rate
        self.history = history or []
        self._last = self.history[-1]["timesteps"] if self.history else -np.inf

    @classmethod
    def for_config(cls, cfg: Any, exp: Experiment, meta: dict[str, Any], history: list[dict] | None = None
                   ) -> "EvalCallback":
        """The run's evaluator: `rl.eval_episodes` seeded randomized episodes every `rl.eval_freq` steps, and
        `rl.confirm_episodes` more (the seeds after them) to confirm a new selection."""
        from training.evaluation import EVAL_SEED_BASE, evaluate_policy
        r = cfg.rl
        confirm = (lambda pol: evaluate_policy(pol, cfg.env, r.confirm_episodes, EVAL_SEED_BASE + r.eval_episodes,
                                               randomize=True)) if r.confirm_episodes else None
        evaluator = cls(lambda pol: evaluate_policy(pol, cfg.env, r.eval_episodes, randomize=True), r.eval_freq,
                        exp, meta, history, r.select_max_fall_rate, confirm)
        evaluator.verbose = 1
        return evaluator

    @property
    def selected(self) -> dict | None:
        i = select(self.history, self.max_fall_rate)
        return None if i is None else self.history[i]

    def _on_training_start(self) -> None:
        if not self.history or self.history[-1]["timesteps"] < self.num_timesteps:
            self._run()

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.num_timesteps - self._last >= self.eval_freq:
            self._run()
        return True

    def _run(self) -> None:
        summary = self.evaluate(self.model.policy)
        summary["timesteps"] = int(self.num_timesteps)
        summary.pop("per_episode", None)
        self.history.append(summary)
        self._last = self.num_timesteps
        for key in ("mean_return", "mean_forward_speed", "fall_rate", "mean_length", *TRACKING_KEYS):
            if key in summary:
                self.logger.record(f"eval/{key}", summary[key])
        chosen = select(self.history, self.max_fall_rate)
        confirmed = ""
        if chosen == len(self.history) - 1 and self.confirm is not None:
            more = self.confirm(self.model.policy)
            more.pop("per_episode", None)
            both = summary["confirmation"] = pooled(summary, more)
            chosen = select(self.history, self.max_fall_rate)
            self.logger.record("eval/confirmed_fall_rate", both["fall_rate"])
            confirmed = (f"; confirmed on {both['episodes']} episodes: speed {both['mean_forward_speed']:.3f} m/s  "
                         f"falls {both['fall_rate']:.0%}{tracking_text(both)}"
                         f"{'' if chosen == len(self.history) - 1 else ' (not selected)'}")
        if chosen == len(self.history) - 1:
            self.exp.save_model(self.model, self.exp / Experiment.BEST_MODEL,
                                {**self.meta, "selected_at_timesteps": int(self.num_timesteps)})
        if chosen is not None:
            self.logger.record("eval/selected_speed", selection_figures(self.history[chosen])["mean_forward_speed"])
        self.logger.dump(self.num_timesteps)
        (self.exp / Experiment.EVALUATIONS).write_text(json.dumps(self.history, indent=1))
        if self.verbose:
            mark = "  -> best_model.zip" if chosen == len(self.history) - 1 else ""
            print(f"eval @ {self.num_timesteps}: return {summary['mean_return']:.1f}  "
                  f"speed {summary['mean_forward_speed']:.3f} m/s  falls {summary['fall_rate']:.0%}"
                  f"{tracking_text(summary)}{confirmed}{mark}")


class CheckpointCallback(BaseCallback):
    """`checkpoints/ppo_<steps>_steps.zip` every `save_freq` env steps, with metadata for safe loading."""

    def __init__(self, save_freq: int, exp: Experiment, meta: dict[str, Any]) -> None:
        super().__init__()
        self.save_freq, self.exp, self.meta = save_freq, exp, meta
        self.ckpt_dir = exp / Experiment.CHECKPOINTS
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.save_freq > 0 and self.num_timesteps - self._last >= self.save_freq:
            self.save()
        return True

    def save(self) -> Path:
        from training.handoff_ppo import RewardNormalizer
        path = self.exp.save_model(self.model, self.ckpt_dir / f"ppo_{self.num_timesteps}_steps.zip", self.meta)
        RewardNormalizer.save(self.model.get_env(), self.ckpt_dir)
        self._last = self.num_timesteps
        return path


class StopOnSignal(BaseCallback):
    """Ends `learn()` at the next env step once a stop signal has arrived (see training.stopping)."""

    def __init__(self, stops: Any) -> None:
        super().__init__()
        self.stops = stops

    def _on_step(self) -> bool:
        return self.stops.received is None


class VisualizationCallback(BaseCallback):
    """Every `freq` env steps: one deterministic episode in a separate env -> videos/step_<N>.mp4, a
    TensorBoard clip, and plots/training_curves.png; also the dashboard at the end of training.

    With `background` (the default) training only rolls the episode out and saves its states; a niced
    process renders the clip (`training.visualization.ClipRenderer`), and the finished clips reach
    TensorBoard at the next visualization or at the end. A rendering failure is reported once as a
    warning and never stops training.
    """

    def __init__(self, freq: int, exp: Experiment, env_cfg: Any, evaluations: Callable[[], list[dict]],
                 episodes: Callable[[], list[dict]], seed: int = 0, fps: int = 25, background: bool = True) -> None:
        super().__init__()
        self.freq, self.exp, self.env_cfg, self.seed, self.fps = freq, exp, env_cfg, seed, fps
        self.evaluations, self.episodes = evaluations, episodes
        self.renderer = None
        if background:
            from training.visualization import ClipRenderer
            self.renderer = ClipRenderer()
        self._last = 0
        self._warned = False
        self.seconds: list[float] = []

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.freq > 0 and self.num_timesteps - self._last >= self.freq:
            self._last = self.num_timesteps
            self.visualize()
        return True

    def _on_training_end(self) -> None:
        if self.renderer is not None:
            self._guarded(lambda: self._harvest(self.renderer.wait()))
        self._guarded(self.dashboard)

    def visualize(self) -> None:
        import time
        start = time.perf_counter()
        self._guarded(self._clip)
        self._guarded(self.dashboard)
        self.seconds.append(time.perf_counter() - start)

    def _clip(self) -> None:
        from training.visualization import (log_video_to_tensorboard, render_states, rollout_states, save_states,
                                            write_mp4)
        policy = self.model.policy
        step = self.num_timesteps
        states = rollout_states(lambda obs: policy.predict(obs, deterministic=True)[0], self.env_cfg,
                                seed=self.seed, fps=self.fps)
        stats = {k: v for k, v in states["stats"].items() if k != "dt"}
        clip = Experiment.clip(self.exp.root, step)
        clip.parent.mkdir(parents=True, exist_ok=True)
        clip.with_suffix(".json").write_text(json.dumps(stats))          # the episode behind the clip
        self.logger.record("visualization/return", stats["return"])
        self.logger.record("visualization/forward_speed", stats["mean_forward_speed"])
        title = f"{step:,} steps"
        if self.renderer is not None:
            self._harvest(self.renderer.finished())
            self.renderer.submit(save_states(clip.with_suffix(".states.npz"), states, self.env_cfg, title), clip, step)
            return
        frames = render_states(states, self.env_cfg, title=title)
        write_mp4(clip, frames, stats["fps"])
        writer = _tensorboard_writer(self.logger)
        if writer is not None:
            log_video_to_tensorboard(writer, "visualization/episode", frames, step, stats["fps"])

    def _harvest(self, done: list) -> None:
        """Finished background clips -> TensorBoard (their GIF); a failed render is a warning."""
        from training.visualization import VIDEO_SIZE, log_video_to_tensorboard
        writer = _tensorboard_writer(self.logger)
        for mp4, step, err in done:
            if err is not None:
                raise RuntimeError(f"rendering {mp4.name}: {err}")
            gif = mp4.with_suffix(".gif")
            if writer is not None and gif.is_file():
                size = (VIDEO_SIZE[0] // 2, VIDEO_SIZE[1] // 2)
                log_video_to_tensorboard(writer, "visualization/episode", gif.read_bytes(), step, self.fps, size)
            gif.unlink(missing_ok=True)

    def dashboard(self) -> None:
        from training.visualization import save_dashboard
        save_dashboard(self.exp / Experiment.DASHBOARD, self.evaluations(), self.episodes(),
                       self.exp.read_json(Experiment.BC_CURVE, None), title=self.exp.root.name)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # rendering problems must never kill training
            if not self._warned:
                import warnings
                warnings.warn(f"visualization failed ({type(exc).__name__}: {exc}); training continues")
                self._warned = True


def _tensorboard_writer(logger) -> Any:
    from stable_baselines3.common.logger import TensorBoardOutputFormat
    for fmt in getattr(logger, "output_formats", []):
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None
