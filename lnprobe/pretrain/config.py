"""The configs of `lnprobe pretrain text` and `lnprobe pretrain vision`, kept apart from the torch code so
the command line builds its options (and `--help`) without importing torch. Both are re-exported by
`lnprobe.pretrain.text` and `lnprobe.pretrain.vision`."""

from __future__ import annotations

from dataclasses import dataclass

from lnprobe.config import at_least, positive, ranged, seed_field, validate


@dataclass(frozen=True)
class TextPretrainConfig:
    llm: str  # a text-only causal LM directory (model + tokenizer)
    data: str  # JSONL of {"text": ...}
    out: str
    steps: int = at_least(1, 300)
    batch_size: int = at_least(1, 32)
    lr: float = positive(3e-3)
    max_length: int = at_least(2, 128)
    compress: float = ranged(0.5, 0, 1)  # share of chat lines whose user turn is span-compressed
    seed: int = seed_field(0)
    progress: bool = True
    force: bool = False

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class VisionPretrainConfig:
    vision: str  # a CLIP vision model directory (model + image processor)
    data: str  # LLaVA JSON of captioned images
    out: str
    image_folder: str | None = None  # default: the data file's folder
    steps: int = at_least(1, 300)
    batch_size: int = at_least(2, 128)
    lr: float = positive(2e-3)
    seed: int = seed_field(0)
    progress: bool = True
    force: bool = False

    def __post_init__(self) -> None:
        validate(self)
