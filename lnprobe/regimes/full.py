"""Atom and preset `full`: the whole LLM and the connector (the vision tower stays frozen), as in LLaVA
finetuning. It combines with no other atom (it already trains all they would), and its checkpoints are
whole models rather than deltas."""

from lnprobe.regimes.base import ATOMS, REGIMES, Atom, Preset


def _select(model, sites, options):
    return [sites.language_model, sites.embed_tokens, sites.lm_head, sites.connector]


ATOMS.add("full", Atom("full", "LLM + connector (everything but the vision tower)", _select, alone=True))
REGIMES.add("full", Preset("full", ("full",), "LLM + connector (full finetune; vision tower frozen)"))
