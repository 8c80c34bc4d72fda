"""Atom `head`: the LLM's output head (`lm_head`; with tied embeddings it is the same tensor as `embed`)."""

from lnprobe.regimes.base import ATOMS, Atom


def _select(model, sites, options):
    return [sites.lm_head]


ATOMS.add("head", Atom("head", "output head", _select, whole_modules=True))
