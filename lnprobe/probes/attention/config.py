"""`lnprobe attention`'s settings: the models by label, the shared probe inputs and the bootstrap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs


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
        if not self.models:
            raise InputError("--model is required (LABEL=PATH, e.g. --model base=DIR --model ln=DIR)")
        self.labelled()  # every item LABEL=PATH
        labels = self.labels()
        if len(set(labels)) != len(labels):
            dup = next(x for x in labels if labels.count(x) > 1)
            raise InputError(f"--model {dup}: label given twice (labels must be unique)")

    def labelled(self) -> dict[str, str]:
        """{label: path} in the order given; InputError for an item that is not LABEL=PATH."""
        out: dict[str, str] = {}
        for item in self.models:
            label, sep, path = item.partition("=")
            if not sep or not label.strip() or not path.strip():
                raise InputError(f"--model {item!r}: expected LABEL=PATH")
            out.setdefault(label.strip(), path.strip())
        return out

    def labels(self) -> list[str]:
        return [item.partition("=")[0].strip() for item in self.models]

    def output(self) -> Output:
        return Output(
            Path(self.out), "attention", self.force, (*self.labelled().values(), *self.inputs.files())
        )
