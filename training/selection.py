"""Which evaluated checkpoint a run ships: the best among those that (almost) never fall.

Fine-tuning can make a policy faster and less safe at once; the return mixes both. The pipeline keeps,
as `best_model.zip`, the evaluated model with the highest `score` among those whose fall rate is at
most `rl.select_max_fall_rate` (2 % by default) on the run's fixed, seeded evaluation episodes: the
mean forward speed in the forward task, the command-tracking score in the command task. When no
evaluation qualifies, there is no selection and `final_model.zip` is all there is.

Confirmation (`rl.confirm_episodes`): the fastest of 40 evaluations that happened to see no fall in 30
episodes is often a lucky one (a model that falls 5 % of the time passes 30 episodes without a fall one
time in five), and 30 episodes cannot tell a 2 % fall rate from 0 % either way. So an evaluation that
would become the selection if it held is first run on that many more seeded episodes; its entry gets a
`confirmation` (the figures pooled over all its episodes), and from then on the pooled figures alone
decide whether it qualifies and how it ranks. An evaluation is worth confirming when it beats the
selection and its own falls still fit the limit over the pooled episodes (`worth_confirming`: one fall in
30 fits 2 % of 100), so a model is not rejected for one hard episode that the trot itself falls in.

The confirmation stops early once its outcome is decided (`curtail`), a sequential test rather than a
smaller sample: its episodes run in chunks of `CONFIRM_CHUNK`, and after each chunk it ends, rejected,
when the falls so far already exceed the limit over all its episodes (certain), or when the remaining
episodes could beat the current selection only with a chance below 0.1 % (stochastic curtailment: the
per-episode scores seen so far predict the rest, with the uncertainty of their mean). An episode's
figures depend only on the policy and its seed (`training.evaluation.batch_actions`), so a
confirmation that runs to the end gives exactly the figures it gave before it ran in chunks.
"""

from __future__ import annotations

import math
from typing import Any

# The command task's tolerances (also the commands suite's, training/suites/commands.py): errors are scored in these units.
VX_TOLERANCE = 0.03        # m/s
WZ_TOLERANCE = 0.10        # rad/s


def tracking_error(h: dict[str, Any]) -> float:
    """Mean absolute tracking error in units of the tolerances, vx and wz averaged (lower is better)."""
    return 0.5 * (h["mean_vx_error"] / VX_TOLERANCE + h["mean_wz_error"] / WZ_TOLERANCE)


def score(h: dict[str, Any]) -> float:
    """Higher is better: forward speed, or minus the tracking error when the evaluation has one."""
    return -tracking_error(h) if "mean_vx_error" in h else h["mean_forward_speed"]


def selection_figures(h: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's figures for the selection: pooled over its confirmation episodes when it has them."""
    return h.get("confirmation") or h


def qualifies(h: dict[str, Any], max_fall_rate: float) -> bool:
    """Whether an evaluation may be the selection: once confirmed, its pooled fall rate is within the
    limit and the confirmation ran to the end (not `curtailed`); unconfirmed, its own fall rate is."""
    seen = selection_figures(h)
    return seen["fall_rate"] <= max_fall_rate + 1e-12 and not seen.get("curtailed")


def select(history: list[dict[str, Any]], max_fall_rate: float) -> int | None:
    """Index of the selected evaluation in `history`: the best `score` among those that `qualify`
    (the earliest of equals), or None."""
    best: int | None = None
    for i, h in enumerate(history):
        if qualifies(h, max_fall_rate) and (best is None or score(selection_figures(h)) >
                                            score(selection_figures(history[best]))):
            best = i
    return best


def worth_confirming(history: list[dict[str, Any]], max_fall_rate: float, confirm_episodes: int) -> bool:
    """Whether the newest, unconfirmed evaluation would become the selection if its confirmation held:
    it beats the current selection, and its falls do not already exceed the limit over its own and the
    confirmation's episodes together."""
    h = history[-1]
    falls = round(h["fall_rate"] * h["episodes"])
    if falls > max_fall_rate * (h["episodes"] + confirm_episodes) + 1e-9:
        return False
    before = select(history[:-1], max_fall_rate)
    return before is None or score(h) > score(selection_figures(history[before]))


CONFIRM_CHUNK = 16         # confirmation episodes between two looks at the outcome
CURTAIL_Z = 3.09           # one-sided 0.1 %: the chance left to beat the selection that ends a confirmation


def episode_score(e: dict[str, Any]) -> float:
    """One episode's `score`: its forward speed, or minus its tracking error in the command task."""
    return -tracking_error(e) if "mean_vx_error" in e else e["mean_forward_speed"]


def curtail(scores: list[float], falls: int, total: int, best: float | None, max_fall_rate: float) -> str | None:
    """Whether a confirmation can stop now, rejected: "falls" when `falls` among the episodes seen (the
    evaluation's and the confirmation's so far, whose per-episode `scores` are given) already exceed the
    limit over all `total` episodes; "score" when the pooled score over `total` episodes beats `best` (the
    selection's score; None: no selection yet) with a predicted chance below 0.1 %; else None (go on).

    The prediction: the remaining m episodes' score sum ~ Normal(m * mean, m * var * (1 + m / n)), the
    mean and variance of the n scores seen (the second term is the uncertainty of their mean)."""
    n, m = len(scores), total - len(scores)
    if falls > max_fall_rate * total + 1e-9:
        return "falls"
    if best is None or m <= 0 or n < 2:
        return None
    mean = sum(scores) / n
    var = sum((x - mean) ** 2 for x in scores) / (n - 1)
    needed = best * total - sum(scores)              # the remaining scores' sum must exceed this
    spread = math.sqrt(m * var * (1 + m / n))
    if spread == 0:
        return "score" if m * mean <= needed else None
    return "score" if (needed - m * mean) / spread > CURTAIL_Z else None


def pooled(first: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Two evaluation summaries of the same model over disjoint episodes as one: every mean (and the fall
    rate) weighted by its episode count."""
    n1, n2 = first["episodes"], more["episodes"]
    out = {"episodes": n1 + n2}
    for key, value in first.items():
        if key not in ("episodes", "timesteps") and key in more and isinstance(value, (int, float)):
            out[key] = (value * n1 + more[key] * n2) / (n1 + n2)
    return out


# ---------------------------------------------------------------- the figures a finished run reports
TARGET_OVER_TROT = 1.1          # the target speed: 1.1 x the trot's, both under randomization
MAX_FALLS_AT_TARGET = 0.2       # an evaluation at the target speed counts only with at most 20 % falls


def steps_to_target(history: list[dict[str, Any]], target: float) -> int | None:
    """Env steps of the first evaluation at `target` m/s or faster with at most 20 % falls (a lunge that
    falls over is not walking); None when no evaluation got there."""
    for h in history:
        if h["mean_forward_speed"] >= target and h["fall_rate"] <= MAX_FALLS_AT_TARGET:
            return int(h["timesteps"])
    return None


def shipped_eval(rl_summary: dict[str, Any]) -> dict[str, Any]:
    """The final evaluation of the model a run ships: best_model.zip's, else the last model's."""
    selected = rl_summary.get("selected") or {}
    return selected["final_eval"] if selected.get("model") else rl_summary["final_eval"]

