"""`lnprobe similarity`'s settings: the shared probe inputs plus what to compare and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs

TOKEN_MODES = ("all", "image", "text", "answer", "mean", "last")  # lnprobe.capture.tokens.MODES


@dataclass(frozen=True)
class SimilarityConfig:
    a: str  # checkpoint (any load() spec)
    inputs: ProbeInputs
    out: str
    b: str | None = None  # second checkpoint (None: cross-layer within A)
    metrics: tuple[str, ...] = ("cka", "cosine")
    sites: tuple[str, ...] = ("layer.*",)
    tokens: str = "all"
    max_rows: int = at_least(4, 512)  # rows per minibatch (a random subset when more tokens are selected)
    text_max_length: int = at_least(2, 128)  # tokens per text, for text models
    bootstrap: int = at_least(2, 200)
    save_activations: str | None = None  # write each checkpoint's captured rows here (a/ and b/ shards)
    force: bool = False  # replace an earlier `lnprobe similarity` output at `out`

    def __post_init__(self) -> None:
        from lnprobe.probes.similarity.metrics import METRICS

        validate(self)
        for metric in self.metrics:
            METRICS.get(metric)  # unknown names: InputError listing the known ones
        if self.tokens not in TOKEN_MODES:
            raise InputError(f"unknown token selection {self.tokens!r} (known: {', '.join(TOKEN_MODES)})")

    def one_row_per_example(self) -> bool:
        return self.tokens in ("mean", "last")

    def output(self) -> Output:
        return Output(Path(self.out), "similarity", self.force, (self.a, self.b, *self.inputs.files()))

    def activations_output(self) -> Output | None:
        if not self.save_activations:
            return None
        inputs = (self.a, self.b, *self.inputs.files(), self.out)
        return Output(
            Path(self.save_activations),
            "similarity activations",
            self.force,
            inputs,
            flag="--save-activations",
        )
