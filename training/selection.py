"""Which evaluated checkpoint a run ships: the fastest among those that (almost) never fall.

Fine-tuning can make a policy faster and less safe at once; the return mixes both. The pipeline keeps,
as `best_model.zip`, the evaluated model with the highest mean forward speed among those whose fall
rate is at most `rl.select_max_fall_rate` (2 % by default) on the run's fixed, seeded evaluation
episodes. When no evaluation qualifies, there is no selection and `final_model.zip` is all there is.
"""

from __future__ import annotations

from typing import Any


def select(history: list[dict[str, Any]], max_fall_rate: float) -> int | None:
    """Index of the selected evaluation in `history` (the earliest of equals), or None."""
    best: int | None = None
    for i, h in enumerate(history):
        if h["fall_rate"] <= max_fall_rate + 1e-12 and (
                best is None or h["mean_forward_speed"] > history[best]["mean_forward_speed"]):
            best = i
    return best
