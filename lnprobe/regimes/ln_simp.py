"""Preset `ln-simp`: the paper's "LayerNorm-simp.", the atom `norms` alone: the LLM's norms only (0.004 % of
a 7B model)."""

from lnprobe.regimes.base import REGIMES, Preset

REGIMES.add("ln-simp", Preset("ln-simp", ("norms",), "LLM norms only (paper: LayerNorm-simp.)"))
