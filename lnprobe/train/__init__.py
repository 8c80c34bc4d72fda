"""Training: configs, the loop, checkpoints with exact resume, callbacks."""

from lnprobe.train.callbacks import Callback
from lnprobe.train.config import TrainConfig
from lnprobe.train.trainer import Trainer, TrainingDiverged, TrainResult, train

__all__ = ["Callback", "TrainConfig", "TrainResult", "Trainer", "TrainingDiverged", "train"]
