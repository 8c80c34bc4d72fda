"""Training: configs, the loop, checkpoints with exact resume, callbacks.

The names below are imported on first use (PEP 562), so `lnprobe.train.config` (and the command line's
`--help`) load without torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
