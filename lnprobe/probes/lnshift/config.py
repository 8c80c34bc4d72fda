"""`lnprobe lnshift`'s settings: the shared probe inputs, the base to compare with, and the statistics'
options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, positive, validate
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs


@dataclass(frozen=True)
class LnShiftConfig:
    ckpt: str  # the tuned checkpoint (any load() spec)
    base: str  # the checkpoint it was tuned from
    inputs: ProbeInputs
    out: str
    modality_split: bool = True  # activation statistics split into image and text tokens
    outlier_factor: float = positive(6.0)  # outlier dimension: max |x| above this many times the RMS
    top_k: int = at_least(1, 5)  # most-moved dimensions reported per norm
    force: bool = False  # replace an earlier `lnprobe lnshift` output at `out`

    def output(self) -> Output:
        return Output(Path(self.out), "lnshift", self.force, (self.ckpt, self.base, *self.inputs.files()))

    def __post_init__(self) -> None:
        validate(self)
