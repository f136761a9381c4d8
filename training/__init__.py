"""Training pipeline: demonstrations -> behavior cloning -> PPO fine-tuning (see train_pretrain_finetune.py)."""
