"""Training loop, checkpoints and resume."""

from mtlkit.train.trainer import FitState, Trainer, build_optimizer

__all__ = ["FitState", "Trainer", "build_optimizer"]
