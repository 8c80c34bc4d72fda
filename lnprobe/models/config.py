"""Configs of the models layer that the command line builds its options from, kept apart from the torch
code (`assemble.py` re-exports `AssembleConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from lnprobe.config import at_least, choice, option, seed_field, validate
from lnprobe.errors import InputError

CONNECTORS = ("linear", "mlp2x_gelu")  # LLaVA-1's (and the paper's) single linear layer; LLaVA-1.5's MLP
DECODERS = ("llama", "mistral", "qwen2")  # the tiny model's decoder families (lnprobe.models.tiny)
TOKENIZERS = ("bpe", "words")


@dataclass(frozen=True)
class TinyConfig:
    """Shapes of a tiny LLaVA model. Defaults give ~0.3 M parameters and 16 image tokens per image."""

    lm: str = choice("llama", DECODERS, "Decoder family: llama, mistral or qwen2.")
    connector: str = choice("linear", CONNECTORS, "linear (LLaVA-1, the paper) or mlp2x_gelu (LLaVA-1.5).")
    hidden_size: int = at_least(1, 64, "Decoder width.")
    intermediate_size: int = at_least(1, 128, "Decoder MLP width.")
    num_layers: int = at_least(1, 4, "Decoder layers.", flags=("--layers", "--num-layers"))
    num_heads: int = at_least(1, 4, "Decoder attention heads.")
    num_kv_heads: int = at_least(1, 2, "Decoder key/value heads.")
    vision_hidden_size: int = at_least(1, 32, "Vision tower width.")
    vision_intermediate_size: int = at_least(1, 64, "Vision tower MLP width.")
    vision_layers: int = at_least(1, 2, "Vision tower layers.")
    vision_heads: int = at_least(1, 2, "Vision tower attention heads.")
    image_size: int = at_least(1, 32, "Image side in pixels.")
    patch_size: int = at_least(1, 8, "Vision patch side in pixels ((image/patch)^2 image tokens).")
    vocab_size: int = at_least(1, 512, "The bpe tokenizer's vocabulary (words has its fixed one).")
    tokenizer: str = choice(
        "bpe", TOKENIZERS, "bpe (byte-level, any text) or words (the miniature's word-level vocabulary)."
    )
    max_position_embeddings: int = at_least(1, 512, "Longest sequence the decoder takes.")
    seed: int = seed_field(0, "Initialisation seed.")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class AssembleConfig:
    llm: str = option(help="Text causal LM (Llama / Mistral / Qwen2): directory, hub id or .gguf file.")
    vision: str = option(help="CLIP / SigLIP vision model (or a full CLIP / SigLIP model).")
    out: str = option(help="Output checkpoint directory.")
    connector: str = option("mlp2x_gelu", "linear (LLaVA-1, the paper) or mlp2x_gelu (LLaVA-1.5).")
    seed: int = seed_field(0, "Seed of the connector's initialisation (recorded).")
    online: bool = option(False, "Allow downloading hub ids.", switch=True)
    force: bool = option(False, "Replace OUT if it exists.", switch=True)

    def __post_init__(self) -> None:
        if not self.llm or not self.vision:
            raise InputError("--llm and --vision are required")
        validate(self)
        if self.connector not in CONNECTORS:
            raise InputError(f"unknown --connector {self.connector!r} (known: {', '.join(CONNECTORS)})")
