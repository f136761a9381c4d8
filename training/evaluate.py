"""Evaluate a policy (= `pidog evaluate`): return, speed, distance and fall rate over seeded episodes.

    python training/evaluate.py --model outputs/<exp>/final_model.zip [--episodes 10] [--seed 0]
    python training/evaluate.py --gait trot --no-randomization

The evaluation itself is `training/evaluation.py`.
"""

import sys

if __name__ == "__main__":
    from training.cli import main
    sys.exit(main(["evaluate", *sys.argv[1:]], prog="evaluate.py"))
