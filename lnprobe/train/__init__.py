"""Training: configs, the loop, checkpoints with exact resume, callbacks.

The names below are imported on first use (PEP 562), so `lnprobe.train.config` (and the command line's
`--help`) load without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnprobe.lazy import lazy_exports

_EXPORTS = {
    "Callback": "callbacks",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "Trainer": "trainer",
    "TrainingDiverged": "trainer",
    "train": "trainer",
}
__all__ = ["Callback", "TrainConfig", "TrainResult", "Trainer", "TrainingDiverged", "train"]

if TYPE_CHECKING:
    from lnprobe.train.callbacks import Callback
    from lnprobe.train.config import TrainConfig
    from lnprobe.train.trainer import Trainer, TrainingDiverged, TrainResult, train


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
