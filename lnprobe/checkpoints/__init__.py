"""Checkpoints: the lnprobe delta format (`delta`: a regime's trainable tensors plus the base they apply
to), loading a delta (`load`: the regime re-applied to the base) and exporting one as a PEFT adapter
(`export`).

This layer sits above `models` and `regimes` (a delta is read back by re-applying its regime) and below
`train` (which writes deltas), `probes` and the command line. Importing it registers the delta format with
`lnprobe.models.formats`, so `lnprobe.models.load(spec)` reads deltas without `models` importing this
layer; the package `lnprobe` imports it first thing. Importing it loads no torch.
"""

from __future__ import annotations

from pathlib import Path

from lnprobe.checkpoints.delta import DELTA_FILE, read_delta
from lnprobe.models.formats import FORMATS, CheckpointFormat


def _base(path: Path) -> str:
    return read_delta(path).base


def _load(*args):
    from lnprobe.checkpoints.load import load_delta

    return load_delta(*args)


FORMATS.add("delta", CheckpointFormat(marker=DELTA_FILE, base=_base, load=_load))
