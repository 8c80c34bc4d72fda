"""`attn-mlp`: the MLP of every decoder layer (the paper's "attention MLP"), plus the connector."""

from lnprobe.regimes.base import REGIMES, Regime


def _select(model, sites, options):
    return [*sites.mlp, sites.connector]


REGIMES.add("attn-mlp", Regime("attn-mlp", "decoder-layer MLPs + connector", _select))
