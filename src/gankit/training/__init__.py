"""Training: the generic loop, EMA, metrics logging and the run-folder driver."""

from .guards import TrainingDiverged, TrainingInterrupted
from .loop import TrainResult
from .run import prepare_training, train
from .trainer import Trainer

__all__ = [
    "Trainer",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "prepare_training",
    "train",
]
