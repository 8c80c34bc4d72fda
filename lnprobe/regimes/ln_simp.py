"""`ln-simp`: the paper's "LayerNorm-simp.": the LLM's norms only (0.004 % of a 7B model)."""

from lnprobe.regimes.base import REGIMES, Regime


def _select(model, sites, options):
    return list(sites.lm_norms())


REGIMES.add("ln-simp", Regime("ln-simp", "LLM norms only (paper: LayerNorm-simp.)", _select))
