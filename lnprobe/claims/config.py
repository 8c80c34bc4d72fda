"""`lnprobe claims`'s settings (torch-free, so the command line builds its options without torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.io import Output


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

    def seeds(self, which: str) -> dict[str, str]:
        """{'ln': first, 'ln.2': second, ...} for `ln` or `full`."""
        specs = getattr(self, which)
        return {which if i == 0 else f"{which}.{i + 1}": spec for i, spec in enumerate(specs)}

    @property
    def models(self) -> dict[str, str]:
        return {"base": self.base, **self.seeds("ln"), **self.seeds("full"), **self.others}
