"""Atom `attn-qv`: the query and value projections of every decoder layer.

Presets: `attn-qv` = `attn-qv+connector` (lnprobe's reading until now) and `attn-qv-paper` =
`attn-qv+connector+embed+head` (the paper's Figure 1 caption: connector, word embeddings and output head
are trained by default for every compared option).
"""

from lnprobe.errors import SitesError
from lnprobe.regimes.base import ATOMS, REGIMES, Atom, Preset


def _select(model, sites, options):
    names = []
    for attn in sites.attn:
        for proj in ("q_proj", "v_proj"):
            try:
                model.get_submodule(f"{attn}.{proj}")
            except AttributeError:
                raise SitesError(f"attn-qv: {attn!r} has no separate {proj} (fused attention?)") from None
            names.append(f"{attn}.{proj}")
    return names


ATOMS.add("attn-qv", Atom("attn-qv", "attention Q and V projections", _select))
REGIMES.add(
    "attn-qv", Preset("attn-qv", ("attn-qv", "connector"), "attention Q and V projections + connector")
)
REGIMES.add(
    "attn-qv-paper",
    Preset(
        "attn-qv-paper",
        ("attn-qv", "connector", "embed", "head"),
        "attention Q and V projections + connector + word embeddings + output head (paper's reading)",
    ),
)
