"""`lnprobe linprobe`'s settings: the models by label, the shared probe inputs, the folds (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, positive, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs, keep_sink_tokens_field, labelled_models, sink_factor_field


@dataclass(frozen=True)
class LinprobeConfig:
    inputs: ProbeInputs
    out: str = option(help="Output directory.")
    models: tuple[str, ...] = option(
        (),
        "A model as LABEL=PATH (e.g. base=DIR, ln=DIR, full=DIR); repeat for each, labels unique.",
        flags=("--model",),
        metavar="LABEL=PATH",
    )
    folds: int = at_least(2, 5, "Cross-validation folds (grouped by example).")
    tokens_per_class: int = at_least(
        2, 1000, "Image vs text: rows drawn per class (balanced, so chance is 0.5)."
    )
    pca_points: int = at_least(
        2, 300, "PCA views: image and text rows drawn, each (the same rows at every layer)."
    )
    c: float = positive(1.0, "Inverse L2 strength of the logistic regression (scikit-learn's C).")
    probe_seed: int = seed_field(0, "Seed for the row subsamples and the fold assignment.")
    keep_sink_tokens: bool = keep_sink_tokens_field()
    sink_factor: float = sink_factor_field()
    force: bool = option(
        False, "Replace an earlier output of this command at --out (nothing else).", switch=True
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "models", (self.models,) if isinstance(self.models, str) else tuple(self.models)
        )
        validate(self)
        if not self.out:
            raise InputError("--out is required")
        self.specs  # noqa: B018 (checks the --model values)
        if self.folds > self.inputs.n:
            raise InputError(f"--folds {self.folds}: more folds than examples (--n {self.inputs.n})")

    @property
    def specs(self) -> dict[str, str]:
        """{label: checkpoint} in the order given (`labelled_models`)."""
        return labelled_models(self.models)

    def output(self) -> Output:
        return Output(Path(self.out), "linprobe", self.force, (*self.specs.values(), *self.inputs.files()))
