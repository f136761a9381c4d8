#!/usr/bin/env python
"""PiDog: demonstrations -> behavior cloning -> PPO fine-tuning, in one command (= `pidog train`).

One-shot:   python train_pretrain_finetune.py
Staged:     python train_pretrain_finetune.py --total-rl-timesteps 0 --experiment-name bc_only
            python train_pretrain_finetune.py --skip-bc \\
                --pretrained-model outputs/bc_only/bc_pretrained_policy.pth --experiment-name rl_stage
Resume:     python train_pretrain_finetune.py --resume --experiment-name rl_stage
Quick look: python train_pretrain_finetune.py --quick      (a few minutes end to end)
Any setting: --set key.path=value (see `pidog config`)

Everything a run produces goes to <output-dir>/<experiment-name>/ (docs/training.md).
"""

import sys

from training.cli import main as pidog


def main(argv: list[str] | None = None) -> int:
    return pidog(["train", *(sys.argv[1:] if argv is None else argv)], prog="train_pretrain_finetune.py")


if __name__ == "__main__":
    sys.exit(main())
