"""`attn-qv`: the query and value projections of every decoder layer, plus the connector."""

from lnprobe.errors import SitesError
from lnprobe.regimes.base import REGIMES, Regime


def _select(model, sites, options):
    names = []
    for attn in sites.attention:
        for proj in ("q_proj", "v_proj"):
            try:
                model.get_submodule(f"{attn}.{proj}")
            except AttributeError:
                raise SitesError(f"attn-qv: {attn!r} has no separate {proj} (fused attention?)") from None
            names.append(f"{attn}.{proj}")
    return [*names, sites.connector]


REGIMES.add("attn-qv", Regime("attn-qv", "attention Q and V projections + connector", _select))
