"""`lnprobe patch`'s settings: the base and tuned checkpoints, the shared probe inputs and the bootstrap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs


@dataclass(frozen=True)
class PatchConfig:
    base: str = option(help="The base checkpoint the tuned one started from.")
    tuned: str = option(help="The tuned checkpoint (any load() spec: HF directory, lnprobe delta, PEFT).")
    inputs: ProbeInputs
    out: str = option(help="Output directory.")
    bootstrap: int = at_least(10, 1000, "Bootstrap resamples of the examples for the 95% intervals.")
    bootstrap_seed: int = seed_field(0, "Seed for the bootstrap resamples.")
    cumulative: bool = option(True, "Also patch layers 0..k and k..L-1 cumulatively (2L more passes).")
    activations: bool = option(
        True, "Also patch norm outputs per token kind (image / text / both): 1 + 3 x units passes per batch."
    )
    force: bool = option(
        False, "Replace an earlier output of this command at --out (nothing else).", switch=True
    )

    def output(self) -> Output:
        return Output(Path(self.out), "patch", self.force, (self.base, self.tuned, *self.inputs.files()))

    def __post_init__(self) -> None:
        validate(self)
        if not self.base:
            raise InputError("--base is required (the checkpoint the tuned one started from)")
        if not self.tuned:
            raise InputError("--tuned is required (the LN-tuned checkpoint)")
