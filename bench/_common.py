"""Shared helpers for the benchmark scripts: where results go and how they are written."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

# PIDOG_BENCH_RESULTS redirects the output (the tests use it so they never overwrite real results).
RESULTS = Path(os.environ.get("PIDOG_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_result(name: str, figures: dict) -> Path:
    """Print `figures` and write them (plus machine info) to bench/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {**figures, "machine": machine()}
    path.write_text(json.dumps(payload, indent=2))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(f"-> {path}")
    return path


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay out, write and close a matplotlib figure, and say where it went."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    print(f"-> {path}")


def speed_curves(runs: dict[str, list[list[dict]]], path: Path, title: str,
                 lines: list[tuple[float, str, str, str]]) -> None:
    """Evaluated forward speed against PPO steps, one colour per label (every run of it drawn), plus
    horizontal reference `lines` (value, label, color, linestyle)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for color, (label, histories) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], runs.items()):
        for i, h in enumerate(histories):
            ax.plot([e["timesteps"] for e in h], [e["mean_forward_speed"] for e in h], color=color, alpha=0.8,
                    lw=1.5, label=label if i == 0 else None)
    for value, label, color, style in lines:
        ax.axhline(value, color=color, ls=style, lw=1.2, label=label)
    ax.set_xlabel("PPO env steps")
    ax.set_ylabel("eval forward speed (m/s)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)
