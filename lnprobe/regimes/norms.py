"""Atom `norms`: every norm of the LLM (the input and post-attention norms of each decoder layer, any other
norm inside a layer, and the final norm). Alone it is the preset `ln-simp`."""

from lnprobe.regimes.base import ATOMS, Atom


def _select(model, sites, options):
    return list(sites.lm_norms())


ATOMS.add("norms", Atom("norms", "LLM norms", _select, whole_modules=True))
