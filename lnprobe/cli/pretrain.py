"""`lnprobe pretrain text | vision | backbones`: the stages before `assemble` on the command line."""

from __future__ import annotations

from lnprobe.cli.core import group
from lnprobe.cli.core import wide_console as console
from lnprobe.cli.options import config_command
from lnprobe.miniature.backbones import BackbonesConfig
from lnprobe.pretrain.config import TextPretrainConfig, VisionPretrainConfig

CONFIG_FILE = "YAML/JSON file of these options (flags override it)."
pretrain = group(
    "pretrain",
    "The stages before `assemble`: pre-train a text LLM, a vision tower, or the miniature's backbones.",
)


@pretrain.command("backbones")
@config_command(BackbonesConfig, config_file=CONFIG_FILE)
def pretrain_backbones_command(config: BackbonesConfig) -> None:
    """Pre-train the miniature's backbones (vision tower, then text LLM) on their own synthetic world."""
    from lnprobe.miniature.backbones import build_backbones

    result = build_backbones(config)
    scores = ", ".join(f"{k} {v:.3f}" for k, v in result["text_accuracy"].items())
    console.print(f"LLM held-out text answers: {scores}")
    console.print(f"wrote {result['vision']} and {result['llm']}")


@pretrain.command("text")
@config_command(TextPretrainConfig, config_file=CONFIG_FILE)
def pretrain_text_command(config: TextPretrainConfig) -> None:
    """Pre-train a causal LM on a text corpus (the paper's Vicuna stage, in miniature)."""
    from lnprobe.pretrain.text import pretrain_text

    result = pretrain_text(config)
    console.print(f"final loss {result['losses'][-1]:.4f}; wrote {result['out']}")


@pretrain.command("vision")
@config_command(VisionPretrainConfig, config_file=CONFIG_FILE)
def pretrain_vision_command(config: VisionPretrainConfig) -> None:
    """Pre-train a CLIP vision tower contrastively on image-caption pairs."""
    from lnprobe.pretrain.vision import pretrain_vision

    result = pretrain_vision(config)
    console.print(f"final loss {result['losses'][-1]:.4f}; wrote {result['out']}")
