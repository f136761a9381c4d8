"""The fit's picture: measured and simulated joint angles over the recording, the held-out segments shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_fit(data, result: dict, holdout: str | None, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    q_sim = np.rad2deg(result["q_sim"]) - result["offsets_deg"].reshape(1, 2)
    q = np.rad2deg(data.q)
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), gridspec_kw={"height_ratios": [2, 2, 2]})
    for j, (ax, name) in enumerate(zip(axes[:2], ("hip", "knee"))):
        ax.plot(data.t, q[:, j], ".", ms=1.5, color="tab:blue", label="measured (video)")
        ax.plot(data.t, q_sim[:, j], "-", lw=0.8, color="tab:orange", label="simulated (fitted servo)")
        ax.set_ylabel(f"{name} (deg)")
        if holdout:
            held = data.kind == holdout
            if held.any():
                ax.axvspan(data.t[held].min(), data.t[held].max(), color="0.9", zorder=0, label=f"held out ({holdout})")
    axes[0].legend(loc="upper right", fontsize=8, markerscale=6)
    axes[1].set_xlabel("time (s)")
    ax = axes[2]
    show = data.kind == (holdout or "chirp")
    if not show.any():
        show = np.ones(len(data.t), bool)
    for j, (name, colour) in enumerate((("hip", "tab:blue"), ("knee", "tab:green"))):
        ax.plot(data.t[show], q[show, j], ".", ms=2, color=colour, label=f"{name} measured")
        ax.plot(data.t[show], q_sim[show, j], "-", lw=1, color="k", alpha=0.7)
    ax.set_title(f"{holdout or 'chirp'} segments (lines: simulated)" +
                 (f", held-out error {result['holdout_mae_deg']:.2f} deg" if result.get("holdout_mae_deg") is not None else ""),
                 fontsize=9)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("deg")
    ax.legend(fontsize=8, markerscale=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
