"""`lnprobe similarity`'s settings: the shared probe inputs plus what to compare and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import ProbeInputs, keep_sink_tokens_field, sink_factor_field

TOKEN_MODES = ("all", "image", "text", "answer", "mean", "last")  # lnprobe.capture.tokens.MODES


@dataclass(frozen=True)
class SimilarityConfig:
    a: str = option(help="Checkpoint (any load() spec).", positional=True, metavar="CKPT_A")
    inputs: ProbeInputs
    out: str = option(help="Output directory (similarity.json/.npz, PNG and HTML).")
    # None: cross-layer within A
    b: str | None = option(
        None, "Second checkpoint (omit: cross-layer within A).", positional=True, metavar="CKPT_B"
    )
    metrics: tuple[str, ...] = option(
        ("cka", "cosine"),
        "cka, cka_biased, rbf_cka, cosine, mutual_knn (k=10 nearest neighbours), procrustes (shape "
        "similarity).",
        flags=("--metric", "-m"),
    )
    sites: tuple[str, ...] = option(("layer.*",), "Site glob(s), e.g. 'layer.*'.", flags=("--site", "-s"))
    tokens: str = option(
        "text", "text (the default: as claims), image, all (mixes modalities), answer, mean, last."
    )
    # a random subset of the rows when more tokens are selected
    max_rows: int = at_least(4, 512, "Rows (tokens) per minibatch, sampled when more.")
    text_max_length: int = at_least(2, 128, "Tokens per text, for text models.")
    bootstrap: int = at_least(2, 200, "Bootstrap draws for the 95% intervals.")
    keep_sink_tokens: bool = keep_sink_tokens_field()
    sink_factor: float = sink_factor_field()
    null_permutations: int = at_least(
        0, 4, "Row permutations per minibatch for the cka permutation null (0: no null)."
    )
    save_activations: str | None = option(
        None, "Also write the captured rows (safetensors shards, a/ and b/) here, for reuse."
    )
    label_a: str | None = option(None, "Name of CKPT_A in figure titles (default: from the checkpoint).")
    label_b: str | None = option(None, "Name of CKPT_B in figure titles (default: from the checkpoint).")
    force: bool = option(False, "Replace an earlier `lnprobe similarity` output (nothing else).", switch=True)

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
