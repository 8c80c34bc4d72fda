"""Atom `lora`: PEFT LoRA adapters on every linear layer of the LLM's decoder (never the vision tower, never
the head), rank 32 by default as in the paper.

Presets: `lora` = `lora+connector` (adapters + connector: lnprobe's reading until now) and `lora-paper` =
`lora+connector+embed+head` (the paper's Figure 1 caption: connector, word embeddings and output head are
trained by default for every compared option; only under this reading does LayerNorm train fewer
parameters than LoRA at 13B, as the paper reports).

Targets are given to PEFT as exact module names resolved from the model, so the CLIP tower's identically
named q/k/v projections are never wrapped. The connector is unfrozen in place, not through PEFT's
`modules_to_save` (which would copy it).
"""

import warnings

from lnprobe.regimes.base import ATOMS, REGIMES, Atom, Preset


def lora_targets(model, sites) -> list[str]:
    from torch import nn

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name.startswith(layer + ".") for layer in sites.layers)
    ]


def _prepare(model, sites, options):
    from peft import LoraConfig, get_peft_model

    from lnprobe.models.hf import quiet_transformers

    config = LoraConfig(
        r=options.lora_rank,
        lora_alpha=options.alpha,
        lora_dropout=options.lora_dropout,
        target_modules=lora_targets(model, sites),
        bias="none",
    )
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PEFT calls a deprecated transformers alias
        return get_peft_model(model, config)


def _select(model, sites, options):
    return [name for name, _ in model.named_parameters() if ".lora_" in name]


ATOMS.add("lora", Atom("lora", "LoRA adapters on LLM linear layers (rank 32)", _select, _prepare))
REGIMES.add("lora", Preset("lora", ("lora", "connector"), "LoRA on LLM linear layers (rank 32) + connector"))
REGIMES.add(
    "lora-paper",
    Preset(
        "lora-paper",
        ("lora", "connector", "embed", "head"),
        "LoRA (rank 32) + connector + word embeddings + output head (paper's reading)",
    ),
)
