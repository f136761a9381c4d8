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
from training.selection import (CONFIRM_CHUNK, curtail, episode_score, pooled, score, select, selection_figures,
                                worth_confirming)

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

    `evaluate(policy, seed, n)` runs the episodes of seeds seed .. seed + n - 1 and returns their
    per-episode figures (`training.evaluation.run_seeds` / `EvalPool.run`). Each evaluation runs
    `eval_episodes` from `seed`. Writes `evaluations.json` (a history that survives --resume, with each
    evaluation's per-episode scores and falls) and saves `best_model.zip` whenever the new evaluation
    becomes the selection (`training.selection`: the fastest evaluated model whose fall rate is at most
    `max_fall_rate`). With `confirm_episodes`, an evaluation that would become the selection is first run
    on that many more episodes (the seeds after its own), in chunks that stop once the outcome is decided
    (`training.selection.curtail`); the pooled figures decide. `seconds` holds the time spent evaluating
    and confirming.
    """

    def __init__(self, evaluate: Callable[[Any, int, int], list[dict]], eval_freq: int, exp: Experiment,
                 meta: dict[str, Any], history: list[dict] | None = None, max_fall_rate: float = 0.02,
                 eval_episodes: int = 30, confirm_episodes: int = 0, seed: int = 10_000) -> None:
        super().__init__()
        self.evaluate, self.eval_freq, self.exp, self.meta = evaluate, eval_freq, exp, meta
        self.eval_episodes, self.confirm_episodes, self.seed = eval_episodes, confirm_episodes, seed
        self.max_fall_rate = max_fall_rate
        self.history = history or []
        self._last = self.history[-1]["timesteps"] if self.history else -np.inf
        self.seconds = {"evaluations": 0.0, "confirmations": 0.0}
        self.confirmation_episodes = {"run": 0, "skipped": 0}       # by curtailment

    @classmethod
    def for_config(cls, cfg: Any, exp: Experiment, meta: dict[str, Any], history: list[dict] | None = None,
                   pool: Any = None) -> "EvalCallback":
        """The run's evaluator: `rl.eval_episodes` seeded randomized episodes every `rl.eval_freq` steps, and
        `rl.confirm_episodes` more (the seeds after them) to confirm a new selection; over `pool`'s
        processes when given."""
        from training.common import with_randomization
        from training.evaluation import EVAL_SEED_BASE, run_seeds
        r, env_cfg = cfg.rl, with_randomization(cfg.env, True)

        def evaluate(policy, seed: int, n: int) -> list[dict]:
            seeds = list(range(seed, seed + n))
            return pool.run(policy, env_cfg, seeds) if pool is not None else run_seeds(policy, env_cfg, seeds)
        evaluator = cls(evaluate, r.eval_freq, exp, meta, history, r.select_max_fall_rate, r.eval_episodes,
                        r.confirm_episodes, EVAL_SEED_BASE)
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
        import time
        t0 = time.perf_counter()
        eps = self.evaluate(self.model.policy, self.seed, self.eval_episodes)
        self.seconds["evaluations"] += time.perf_counter() - t0
        summary = _summary(eps)
        summary["timesteps"] = int(self.num_timesteps)
        self.history.append(summary)
        self._last = self.num_timesteps
        for key in ("mean_return", "mean_forward_speed", "fall_rate", "mean_length", *TRACKING_KEYS):
            if key in summary:
                self.logger.record(f"eval/{key}", summary[key])
        if self.confirm_episodes and worth_confirming(self.history, self.max_fall_rate, self.confirm_episodes):
            t0 = time.perf_counter()
            summary["confirmation"] = self._confirm(eps)
            self.seconds["confirmations"] += time.perf_counter() - t0
            self.logger.record("eval/confirmed_fall_rate", summary["confirmation"]["fall_rate"])
        chosen = select(self.history, self.max_fall_rate)
        confirmed = ""
        if "confirmation" in summary:
            both = summary["confirmation"]
            stopped = (f", stopped early: {'too many falls' if both['curtailed'] == 'falls' else 'cannot beat the selection'}"
                       if both.get("curtailed") else "")
            confirmed = (f"; confirmed on {both['episodes']} episodes: speed {both['mean_forward_speed']:.3f} m/s  "
                         f"falls {both['fall_rate']:.0%}{tracking_text(both)}{stopped}"
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

    def _confirm(self, eps: list[dict]) -> dict[str, Any]:
        """The confirmation of the newest evaluation (episodes `eps`): its pooled figures, with `curtailed`
        set when it stopped early."""
        before = select(self.history[:-1], self.max_fall_rate)
        best = None if before is None else score(selection_figures(self.history[before]))
        total = self.eval_episodes + self.confirm_episodes
        more: list[dict] = []
        reason = None
        while len(more) < self.confirm_episodes and reason is None:
            n = min(CONFIRM_CHUNK, self.confirm_episodes - len(more))
            more += self.evaluate(self.model.policy, self.seed + self.eval_episodes + len(more), n)
            seen = eps + more
            if len(more) < self.confirm_episodes:
                reason = curtail([episode_score(e) for e in seen], sum(bool(e["fell"]) for e in seen), total,
                                 best, self.max_fall_rate)
        self.confirmation_episodes["run"] += len(more)
        self.confirmation_episodes["skipped"] += self.confirm_episodes - len(more)
        both = pooled(_summary(eps), _summary(more))
        both.update(scores=[round(episode_score(e), 5) for e in more], fell=[bool(e["fell"]) for e in more])
        if reason is not None:
            both["curtailed"] = reason
        return both


def _summary(eps: list[dict]) -> dict[str, Any]:
    """An evaluation's figures, with its episodes' scores and falls (what a confirmation's test reads)."""
    from training.evaluation import summary_of
    out = summary_of(eps)
    out.pop("per_episode")
    out.update(scores=[round(episode_score(e), 5) for e in eps], fell=[bool(e["fell"]) for e in eps])
    return out


class CheckpointCallback(BaseCallback):
    """`checkpoints/ppo_<steps>_steps.zip` every `save_freq` env steps, with metadata for safe loading."""

    def __init__(self, save_freq: int, exp: Experiment, meta: dict[str, Any]) -> None:
        super().__init__()
        self.save_freq, self.exp, self.meta = save_freq, exp, meta
        self.ckpt_dir = exp / Experiment.CHECKPOINTS
        self._last = 0
        self.seconds = 0.0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.save_freq > 0 and self.num_timesteps - self._last >= self.save_freq:
            self.save()
        return True

    def save(self) -> Path:
        import time
        from training.handoff_ppo import RewardNormalizer
        t0 = time.perf_counter()
        path = self.exp.save_model(self.model, self.ckpt_dir / f"ppo_{self.num_timesteps}_steps.zip", self.meta)
        RewardNormalizer.save(self.model.get_env(), self.ckpt_dir)
        self._last = self.num_timesteps
        self.seconds += time.perf_counter() - t0
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
