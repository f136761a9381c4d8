"""Behavior cloning on its own (= `pidog imitate`).

    python training/train_imitation.py --experiment-name bc_only                        # trot demos + BC
    python training/train_imitation.py --demos outputs/bc1/demonstrations.npz --experiment-name bc2

BC writes bc_pretrained_policy.pth (usable with `train_pretrain_finetune.py --skip-bc --pretrained-model`).
"""

import sys

if __name__ == "__main__":
    from training.cli import main
    sys.exit(main(["imitate", *sys.argv[1:]], prog="train_imitation.py"))
