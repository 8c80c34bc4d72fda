"""`lnprobe pretrain text | vision | backbones`: the stages before `assemble` on the command line."""

from __future__ import annotations

from pathlib import Path

from lnprobe.cli.core import group
from lnprobe.cli.core import wide_console as console
from lnprobe.cli.options import with_dataclass_options
from lnprobe.miniature.backbones import BackbonesConfig
from lnprobe.pretrain.config import TextPretrainConfig, VisionPretrainConfig

pretrain = group(
    "pretrain",
    "The stages before `assemble`: pre-train a text LLM, a vision tower, or the miniature's backbones.",
)


@pretrain.command("backbones")
@with_dataclass_options(
    BackbonesConfig,
    {"out": "Directory to build them in (data/, vision/, llm/; a finished step is reused)."},
    "YAML/JSON file of these options (flags override it).",
)
def pretrain_backbones_command(config_file: Path | None, values: dict) -> None:
    """Pre-train the miniature's backbones (vision tower, then text LLM) on their own synthetic world."""
    from lnprobe.miniature.backbones import build_backbones

    result = build_backbones(_load(BackbonesConfig, config_file, values))
    scores = ", ".join(f"{k} {v:.3f}" for k, v in result["text_accuracy"].items())
    console.print(f"LLM held-out text answers: {scores}")
    console.print(f"wrote {result['vision']} and {result['llm']}")


@pretrain.command("text")
@with_dataclass_options(
    TextPretrainConfig,
    {
        "llm": "Text-only causal LM directory to start from.",
        "data": 'JSONL corpus of {"text": ...} lines.',
        "out": "Directory to write the pre-trained LM to.",
        "compress": "Share of chat lines whose context "
        "sentences are fed as one vector each (see docs/miniature.md).",
    },
    "YAML/JSON file of these options (flags override it).",
)
def pretrain_text_command(config_file: Path | None, values: dict) -> None:
    """Pre-train a causal LM on a text corpus (the paper's Vicuna stage, in miniature)."""
    from lnprobe.pretrain.text import pretrain_text

    result = pretrain_text(_load(TextPretrainConfig, config_file, values))
    console.print(f"final loss {result['losses'][-1]:.4f}; wrote {result['out']}")


@pretrain.command("vision")
@with_dataclass_options(
    VisionPretrainConfig,
    {
        "vision": "CLIP vision model directory to start from.",
        "data": "LLaVA JSON of captioned images.",
        "out": "Directory to write the pre-trained tower to.",
    },
    "YAML/JSON file of these options (flags override it).",
)
def pretrain_vision_command(config_file: Path | None, values: dict) -> None:
    """Pre-train a CLIP vision tower contrastively on image-caption pairs."""
    from lnprobe.pretrain.vision import pretrain_vision

    result = pretrain_vision(_load(VisionPretrainConfig, config_file, values))
    console.print(f"final loss {result['losses'][-1]:.4f}; wrote {result['out']}")


def _load(cls, config_file: Path | None, values: dict):
    from lnprobe.config import from_dict
    from lnprobe.train.config import load_config_file

    merged = {**(load_config_file(config_file) if config_file else {}), **values}
    return from_dict(cls, merged, source=str(config_file or "flags"))
