"""`lnprobe gradvar`'s settings: the shared probe inputs plus the sampling unit and parameter groups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import option, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs

GROUP_KINDS = ("norms", "attn", "mlp", "connector", "embeddings", "head", "lora")
UNITS = ("example", "batch")


@dataclass(frozen=True)
class GradVarConfig:
    ckpt: str = option(help="Checkpoint (any load() spec).", positional=True, metavar="CKPT")
    inputs: ProbeInputs
    out: str = option(help="Output directory.")
    # example: per-example gradients; batch: one sample per minibatch
    unit: str = option("example", "example (per-example gradients) or batch.")
    groups: tuple[str, ...] = option(
        ("norms", "attn", "mlp"), ", ".join(GROUP_KINDS) + ".", flags=("--group", "-g")
    )
    # also the activation gradients at each decoder layer's output
    activations: bool = option(False, "Also the variance of activation gradients at each layer output.")
    force: bool = option(
        False, "Replace an earlier output of this command at --out (nothing else).", switch=True
    )

    def output(self) -> Output:
        return Output(Path(self.out), "gradvar", self.force, (self.ckpt, *self.inputs.files()))

    def __post_init__(self) -> None:
        validate(self)
        if self.unit not in UNITS:
            raise InputError(f"unknown --unit {self.unit!r} (example or batch)")
        unknown = [g for g in self.groups if g not in GROUP_KINDS]
        if unknown or not self.groups:
            raise InputError(f"unknown --group {', '.join(unknown)} (known: {', '.join(GROUP_KINDS)})")
