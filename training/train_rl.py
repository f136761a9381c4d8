"""RL on the env alone (= `pidog rl`): PPO, SAC or TD3, from scratch or from a BC policy.

    python training/train_rl.py --algo ppo --timesteps 1000000 --experiment-name ppo_scratch
    python training/train_rl.py --algo ppo --pretrained-model outputs/bc1/bc_pretrained_policy.pth
    python training/train_rl.py --algo sac --timesteps 300000 --experiment-name sac1
    python training/train_rl.py --algo td3 --pretrained-model outputs/bc1/bc_pretrained_policy.pth

PPO runs the pipeline's RL stage (hand-off schedule, evaluation, checkpoints, --resume). SAC and TD3
(`training/off_policy.py`) use the same network sizes; from a BC policy their actor is first fitted to
the BC policy's actions on the demonstrations saved beside it, then they learn off-policy.
"""

import sys

if __name__ == "__main__":
    from training.cli import main
    sys.exit(main(["rl", *sys.argv[1:]], prog="train_rl.py"))
