"""lnprobe.

The package wires in the checkpoint formats of the layers above `models` (`lnprobe.checkpoints`: the delta
format), so `lnprobe.models.load` reads every format whichever module a caller imports first."""

from lnprobe import checkpoints  # noqa: F401  (registers the delta format; torch-free)
