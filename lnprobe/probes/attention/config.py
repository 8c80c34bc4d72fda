"""`lnprobe attention`'s settings: the models by label, the shared probe inputs and the bootstrap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, seed_field, validate
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs, labelled_models


@dataclass(frozen=True)
class AttentionConfig:
    # ("base=DIR", "ln=DIR", ...): a tuple, not a dict, so that a repeated label is an error, not an overwrite
    models: tuple[str, ...] = option(
        help="A model as LABEL=PATH (repeat: the first is the reference the others are compared with).",
        flags=("--model",),
        metavar="LABEL=PATH",
    )
    inputs: ProbeInputs
    out: str = option(help="Output directory.")
    bootstrap: int = at_least(10, 1000, "Bootstrap resamples of the examples for the 95% intervals.")
    bootstrap_seed: int = seed_field(0, "Seed for the bootstrap resamples.")
    force: bool = option(
        False, "Replace an earlier output of this command at --out (nothing else).", switch=True
    )

    def __post_init__(self) -> None:
        models = self.models
        if isinstance(models, dict):  # the Python API may pass {label: path}
            models = tuple(f"{k}={v}" for k, v in models.items())
        elif isinstance(models, str):
            models = (models,)
        object.__setattr__(self, "models", tuple(models))
        validate(self)
        self.labelled()  # every item LABEL=PATH, labels unique

    def labelled(self) -> dict[str, str]:
        """{label: path} in the order given (`labelled_models`)."""
        return labelled_models(self.models)

    def output(self) -> Output:
        return Output(
            Path(self.out), "attention", self.force, (*self.labelled().values(), *self.inputs.files())
        )
