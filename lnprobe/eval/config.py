"""`lnprobe eval`'s settings (torch-free, so the command line builds its options without torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, choice, option, validate
from lnprobe.errors import InputError
from lnprobe.io import Output


@dataclass(frozen=True)
class EvalConfig:
    # None with `predictions`
    ckpt: str | None = option(
        help="Checkpoint (any load() spec); omit with --predictions.", positional=True, metavar="CKPT"
    )
    bench: str = option(help="pope, mme, vqav2, coco or flickr30k.")
    data: str = option(help="The benchmark's official files (folder; see docs/cli.md).")
    out: str = option(help="Output directory.")
    images: str | None = option(None, "Image folder (default: the benchmark's folder under --data).")
    template: str | None = option(None, "Chat template (default: the training run's, else vicuna_v1).")
    prompt: str | None = option(
        None, "Human turn after the image; {question} is replaced (default: LLaVA-1.5's)."
    )
    batch_size: int = at_least(1, 8, "Prompts per generate call (left-padded).")
    max_new_tokens: int | None = at_least(1, None, "Default: 16 (short answers), 48 (captions).")
    limit: int | None = at_least(1, None, "Score only the first N items.")
    device: str = option("cpu", "cpu or cuda.")
    dtype: str | None = choice(
        None, ("fp32", "bf16", "fp16"), "fp32, bf16 or fp16 (default: the checkpoint's)."
    )
    online: bool = option(False, "Allow downloading a hub id.", switch=True)
    # score these instead of generating (see lnprobe.eval.predictions)
    predictions: str | None = option(
        None, "Score these answers instead of generating (results.json, VQA/COCO results, JSONL)."
    )
    force: bool = option(False, "Replace an existing --out.")
    progress: bool = option(True, "Show a progress bar.")

    def __post_init__(self) -> None:
        if not self.bench or not self.data:
            from lnprobe.eval.bench import BENCHES

            raise InputError(f"--bench ({', '.join(BENCHES.names())}) and --data are required")
        validate(self)
        if (self.ckpt is None) == (self.predictions is None):
            raise InputError("give a checkpoint to generate answers, or --predictions FILE, not both")

    def output(self) -> Output:
        inputs = (self.ckpt, self.data, self.images, self.predictions)
        return Output(Path(self.out), "eval", force=self.force, inputs=inputs)
