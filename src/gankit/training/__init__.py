"""Training: the generic loop, EMA, metrics logging and the run-folder driver."""

from .run import prepare_training, train
from .trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult

__all__ = [
    "Trainer",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "prepare_training",
    "train",
]
