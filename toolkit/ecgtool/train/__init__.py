"""Train stage: the one-network recipe (fit), run folders, augmentation, DDP, distillation, the baseline's training."""

from ecgtool.core.api import make_callable

make_callable(__name__, "ecgtool.train.run:train_models")  # ecgtool.train(...) calls train_models
