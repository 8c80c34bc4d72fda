"""Configs of the models layer that the command line builds its options from, kept apart from the torch
code (`assemble.py` re-exports `AssembleConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from lnprobe.config import option, seed_field, validate
from lnprobe.errors import InputError

CONNECTORS = ("linear", "mlp2x_gelu")  # LLaVA-1's (and the paper's) single linear layer; LLaVA-1.5's MLP


@dataclass(frozen=True)
class AssembleConfig:
    llm: str = option(help="Text causal LM (Llama / Mistral / Qwen2): directory or hub id.")
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
