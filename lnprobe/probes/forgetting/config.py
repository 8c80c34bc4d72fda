"""`lnprobe forgetting`'s settings: the two models, the text, and how it is cut into scored windows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.io import Output

PYTHON_DOCS = "python-docs"  # the built-in text: Python's own documentation (lnprobe.probes.forgetting.run)


@dataclass(frozen=True)
class ForgettingConfig:
    base: str = option(help="The model before finetuning (any load() spec).", positional=True, metavar="BASE")
    tuned: str = option(help="The finetuned model (any load() spec).", positional=True, metavar="TUNED")
    text: str = option(
        help=f'UTF-8 .txt file, JSONL/JSON of {{"text": ...}} records, or `{PYTHON_DOCS}` (Python\'s own '
        "documentation, shipped with Python)."
    )
    out: str = option(help="Output directory (forgetting.json).")
    max_length: int = at_least(2, 128, "Tokens per window (non-overlapping; none crosses a record).")
    n: int = at_least(1, 256, "Windows scored (a seeded draw when the text has more).")
    batch_size: int = at_least(1, 8, "Windows per forward pass.")
    seed: int = seed_field(0, "Seed for the draw of windows.")
    device: str = option("cpu", "cpu or cuda.")
    progress: bool = option(True, "Show progress bars.")
    force: bool = option(
        False, "Replace an earlier output of this command at --out (nothing else).", switch=True
    )

    def output(self) -> Output:
        return Output(Path(self.out), "forgetting", self.force, (self.base, self.tuned, self.text))

    def __post_init__(self) -> None:
        validate(self)
        for name, flag in (("base", "BASE"), ("tuned", "TUNED"), ("text", "--text"), ("out", "--out")):
            if not getattr(self, name):
                raise InputError(f"{flag} is required")
