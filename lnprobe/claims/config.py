"""`lnprobe claims`'s settings (torch-free, so the command line builds its options without torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.probes.inputs import keep_sink_tokens_field, sink_factor_field

# Each claim's equivalence margin δ on its difference (LN minus reference), fixed before any result was seen,
# and why (docs/statistics.md#margins): a |difference| below δ is "no effect" when the 90 % interval fits.
MARGINS = {
    "cross_layer_similarity": (
        0.02,
        "CKA lies in [0, 1]; a change below 0.02 is under the resolution at which similarity tables (the "
        "paper's, two decimals) tell layers or models apart",
    ),
    "gradient_variance": (
        math.log(1.25),
        "on log(variance): a ratio within 0.8-1.25 is no practical difference (the bioequivalence "
        "convention for ratios); the paper's claim is a qualitative 'smaller'",
    ),
    "domain_adaptation": (
        math.log(1.05),
        "on the mean log ratio of the image-vs-text gap (tuned / base): a gap moved by less than 5 % is no "
        "adaptation",
    ),
}
PAIRINGS = ("auto", "seed", "order", "none")


def check_margin(name: str, delta) -> float:
    """A margin as given: a finite number >= 0, else a one-line InputError naming it."""
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not math.isfinite(delta) or delta < 0:
        raise InputError(f"--margin {name}={delta}: a margin must be a finite number >= 0")
    return float(delta)


@dataclass(frozen=True)
class ClaimsConfig:
    base: str = option(help="The base model the others were tuned from.")
    # one checkpoint per training seed (a single string is one seed)
    ln: tuple[str, ...] = option(help="LN-tuned checkpoint(s), one per seed.")
    full: tuple[str, ...] = option(help="Fully-finetuned checkpoint(s), one per seed.")
    data: str = option(help="LLaVA JSON/JSONL inputs (seeded subset).")
    out: str = option(help="Output directory (report.md/.html, claims.json).")
    others: dict[str, str] = option(  # e.g. {"lora": ..., "ln-simp": ...}
        help="More checkpoints as NAME=SPEC (e.g. lora=DIR).",
        default_factory=dict,
        flags=("--model",),
        metavar="NAME=SPEC",
    )
    # training run directories, aligned with `ln` (gradient traces)
    ln_runs: tuple[str, ...] = option(
        (), "LN training run(s) with gradient traces, one per --ln.", flags=("--ln-run",)
    )
    full_runs: tuple[str, ...] = option(
        (), "Full-FT training run(s) with gradient traces, one per --full.", flags=("--full-run",)
    )
    n: int = at_least(8, 32, "Examples (the first n of a seeded order).")
    batch_size: int = at_least(4, 8, "Examples per forward pass.")
    # rows for the similarity claim (image tokens' scale would dominate a linear kernel)
    tokens: str = option(
        "text",
        "Rows for the similarity claim: text (image tokens' scale dominates), all, image, answer, mean, "
        "last.",
    )
    seed: int = seed_field(0, "Seed for the example order.")
    device: str = option("cpu", "cpu or cuda.")
    bootstrap: int = at_least(2, 200, "Bootstrap draws for the 95% intervals.")
    patch: bool = option(
        True, "Cite causal evidence: norm patching (lnprobe patch) of each LN seed against the base."
    )
    template: str = option("vicuna_v1", "Chat template for the data.")
    image_folder: str | None = option(None, "Image folder (default: the data file's).")
    max_length: int = at_least(2, 2048, "Tokens per example.")
    progress: bool = option(True, "Show progress bars.")
    force: bool = option(
        False, "Replace an earlier output of this command at --out (nothing else).", switch=True
    )
    keep_sink_tokens: bool = keep_sink_tokens_field()
    sink_factor: float = sink_factor_field()
    margins: dict[str, float] = option(
        help="A claim's equivalence margin δ, e.g. cross_layer_similarity=0.02 (others keep their defaults).",
        default_factory=dict,
        flags=("--margin",),
        metavar="CLAIM=DELTA",
    )
    pair: str = option(
        "auto",
        "How LN and full seeds are paired: auto (by training seed when each side has one per seed, else "
        "by order when the counts match, else unpaired), seed, order, none.",
    )

    def output(self) -> Output:
        inputs = (*self.models.values(), *self.ln_runs, *self.full_runs, self.data, self.image_folder)
        return Output(Path(self.out), "claims", self.force, inputs)

    def __post_init__(self) -> None:
        for name in ("ln", "full", "ln_runs", "full_runs"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not (self.base and self.ln and self.full and self.data):
            raise InputError("--base, --ln, --full and --data are required")
        validate(self)
        self._check_margins()
        if self.pair not in PAIRINGS:
            raise InputError(f"--pair {self.pair!r}: expected one of {', '.join(PAIRINGS)}")
        if self.pair in ("seed", "order") and (len(self.ln) < 2 or len(self.ln) != len(self.full)):
            raise InputError(
                f"--pair {self.pair}: a pooled test needs at least 2 LN and 2 full seeds, as many of each "
                f"(got {len(self.ln)} and {len(self.full)})"
            )
        for runs, specs, flag in (
            (self.ln_runs, self.ln, "--ln-run"),
            (self.full_runs, self.full, "--full-run"),
        ):
            if runs and len(runs) != len(specs):
                raise InputError(
                    f"{flag}: {len(runs)} run(s) for {len(specs)} checkpoint(s); give one per seed"
                )
        clash = set(self.seeds("ln")) | set(self.seeds("full")) | {"base"}
        clash &= set(self.others)
        if clash:
            raise InputError(f"--model names {', '.join(sorted(clash))} are taken (base, ln, full)")

    def _check_margins(self) -> None:
        unknown = set(self.margins) - set(MARGINS)
        if unknown:
            raise InputError(
                f"--margin {', '.join(sorted(unknown))}: unknown claim (known: {', '.join(MARGINS)})"
            )
        margins = {k: check_margin(k, v) for k, v in self.margins.items()}
        object.__setattr__(self, "margins", {k: margins.get(k, m[0]) for k, m in MARGINS.items()})

    def seeds(self, which: str) -> dict[str, str]:
        """{'ln': first, 'ln.2': second, ...} for `ln` or `full`."""
        specs = getattr(self, which)
        return {which if i == 0 else f"{which}.{i + 1}": spec for i, spec in enumerate(specs)}

    @property
    def models(self) -> dict[str, str]:
        return {"base": self.base, **self.seeds("ln"), **self.seeds("full"), **self.others}
