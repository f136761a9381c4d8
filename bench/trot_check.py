"""The hard-coded trot against its acceptance figures.

    python bench/trot_check.py [--seeds 10]

Randomization off: one 20 s episode -> forward_speed_mps (mean over the episode), lateral_drift_ratio
(|lateral drift| / forward distance), heading_change_deg. Randomization on: `--seeds` seeded 20 s
episodes -> falls_of_10 (episodes that ended by a fall). Writes bench/results/trot.json.
"""

from __future__ import annotations

import argparse


from bench._common import write_result
from pidog_env.evaluation import run_trot_episode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="randomized episodes")
    args = parser.parse_args(argv)
    if not 1 <= args.seeds <= 10_000:
        parser.exit(2, "error: --seeds must be in 1..10000\n")
    nominal = run_trot_episode(seed=0, randomize=False)
    randomized = [run_trot_episode(seed=s, randomize=True) for s in range(args.seeds)]
    falls = sum(ep["fell"] for ep in randomized)
    write_result("trot", {
        "forward_speed_mps": round(nominal["mean_forward_speed"], 4),
        "lateral_drift_ratio": round(abs(nominal["lateral_drift"]) / max(nominal["forward_distance"], 1e-9), 4),
        "heading_change_deg": round(nominal["heading_change_deg"], 2),
        "falls_of_10": falls if args.seeds == 10 else round(10 * falls / args.seeds, 2),
        "randomized_mean_speed_mps": round(sum(e["mean_forward_speed"] for e in randomized) / len(randomized), 4),
        "nominal_return": round(nominal["return"], 1),
        "seeds": args.seeds,
        "targets": {"forward_speed_mps": ">= 0.12", "lateral_drift_ratio": "< 0.15",
                    "heading_change_deg": "< 15 (absolute)", "falls_of_10": "<= 1"},
    })


if __name__ == "__main__":
    main()
