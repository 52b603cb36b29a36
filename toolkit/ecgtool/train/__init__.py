"""Train stage: the one-network recipe (fit), run folders, augmentation, DDP, distillation, the baseline's training."""
