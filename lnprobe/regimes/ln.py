"""Preset `ln`: the paper's "LayerNorm" regime, `norms+connector+embed+head`: every norm of the LLM +
connector + word embeddings + output head.

Equal, parameter for parameter, to PEFT `LNTuningConfig`'s default llava targets (multi_modal_projector,
input_layernorm, post_attention_layernorm, norm, embed_tokens, lm_head), without PEFT's module copies.
"""

from lnprobe.regimes.base import REGIMES, Preset

REGIMES.add(
    "ln",
    Preset(
        "ln",
        ("norms", "connector", "embed", "head"),
        "LLM norms + connector + word embeddings + output head (paper: LayerNorm)",
    ),
)
