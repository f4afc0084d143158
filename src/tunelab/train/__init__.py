"""The one training loop and the ``train(config)`` stage around it."""

from tunelab.train.trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
