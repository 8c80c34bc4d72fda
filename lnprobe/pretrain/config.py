"""The configs of `lnprobe pretrain text` and `lnprobe pretrain vision`, kept apart from the torch code so
the command line builds its options (and `--help`) without importing torch. Both are re-exported by
`lnprobe.pretrain.text` and `lnprobe.pretrain.vision`."""

from __future__ import annotations

from dataclasses import dataclass

from lnprobe.config import at_least, option, positive, ranged, seed_field, validate


@dataclass(frozen=True)
class TextPretrainConfig:
    llm: str = option(help="Text-only causal LM directory (model + tokenizer) to start from.")
    data: str = option(help='JSONL corpus of {"text": ...} lines.')
    out: str = option(help="Directory to write the pre-trained LM to.")
    steps: int = at_least(1, 300, "Optimizer steps.")
    batch_size: int = at_least(1, 32, "Texts per step.")
    lr: float = positive(3e-3, "Learning rate.")
    max_length: int = at_least(2, 128, "Tokens per text.")
    compress: float = ranged(
        0.5,
        0,
        1,
        help="Share of chat lines whose context sentences are fed as one vector each "
        "(see docs/miniature.md).",
    )
    seed: int = seed_field(0, "Seed of initialisation and data order.")
    progress: bool = option(True, "Show a progress bar.")
    force: bool = option(False, "Replace an earlier output of this command at --out.")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class VisionPretrainConfig:
    vision: str = option(help="CLIP vision model directory (model + image processor) to start from.")
    data: str = option(help="LLaVA JSON of captioned images.")
    out: str = option(help="Directory to write the pre-trained tower to.")
    image_folder: str | None = option(None, "Image folder (default: the data file's).")
    steps: int = at_least(1, 300, "Optimizer steps.")
    batch_size: int = at_least(2, 128, "Image-caption pairs per step (the contrastive batch).")
    lr: float = positive(2e-3, "Learning rate.")
    seed: int = seed_field(0, "Seed of initialisation and data order.")
    progress: bool = option(True, "Show a progress bar.")
    force: bool = option(False, "Replace an earlier output of this command at --out.")

    def __post_init__(self) -> None:
        validate(self)
