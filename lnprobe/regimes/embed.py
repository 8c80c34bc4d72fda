"""Atom `embed`: the LLM's input word embeddings (`embed_tokens`)."""

from lnprobe.regimes.base import ATOMS, Atom


def _select(model, sites, options):
    return [sites.embed_tokens]


ATOMS.add("embed", Atom("embed", "word embeddings", _select, whole_modules=True))
