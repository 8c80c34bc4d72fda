"""`ln`: the paper's "LayerNorm" regime: every norm of the LLM + connector + word embeddings + output head.

Equal, parameter for parameter, to PEFT `LNTuningConfig`'s default llava targets (multi_modal_projector,
input_layernorm, post_attention_layernorm, norm, embed_tokens, lm_head), without PEFT's module copies.
"""

from lnprobe.regimes.base import REGIMES, Regime


def _select(model, sites, options):
    return [*sites.lm_norms(), sites.connector, sites.embed_tokens, sites.lm_head]


REGIMES.add(
    "ln", Regime("ln", "LLM norms + connector + word embeddings + output head (paper: LayerNorm)", _select)
)
