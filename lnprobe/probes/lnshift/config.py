"""`lnprobe lnshift`'s settings: the shared probe inputs, the base to compare with, and the statistics'
options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, positive, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs, keep_sink_tokens_field, sink_factor_field


@dataclass(frozen=True)
class LnShiftConfig:
    ckpt: str = option(help="The tuned checkpoint (any load() spec).", positional=True, metavar="CKPT")
    base: str = option(help="The base checkpoint the tuned one started from.")
    inputs: ProbeInputs
    out: str = option(help="Output directory.")
    modality_split: bool = option(True, "Split activation statistics into image and text tokens.")
    outlier_factor: float = positive(6.0, "Outlier dimension: max |x| above this many times the RMS.")
    top_k: int = at_least(1, 5, "Most-moved dimensions reported per norm.")
    keep_sink_tokens: bool = keep_sink_tokens_field()
    sink_factor: float = sink_factor_field()
    force: bool = option(
        False, "Replace an earlier output of this command at --out (nothing else).", switch=True
    )

    def output(self) -> Output:
        return Output(Path(self.out), "lnshift", self.force, (self.ckpt, self.base, *self.inputs.files()))

    def __post_init__(self) -> None:
        validate(self)
        if not self.base:
            raise InputError("--base is required (the checkpoint the tuned one started from)")
