"""Atom `attn-mlp`: the MLP of every decoder layer (the paper's "attention MLP").

Presets: `attn-mlp` = `attn-mlp+connector` (lnprobe's reading until now) and `attn-mlp-paper` =
`attn-mlp+connector+embed+head` (the paper's Figure 1 caption: connector, word embeddings and output head
are trained by default for every compared option).
"""

from lnprobe.regimes.base import ATOMS, REGIMES, Atom, Preset


def _select(model, sites, options):
    return list(sites.mlp)


ATOMS.add("attn-mlp", Atom("attn-mlp", "decoder-layer MLPs", _select, whole_modules=False))
REGIMES.add("attn-mlp", Preset("attn-mlp", ("attn-mlp", "connector"), "decoder-layer MLPs + connector"))
REGIMES.add(
    "attn-mlp-paper",
    Preset(
        "attn-mlp-paper",
        ("attn-mlp", "connector", "embed", "head"),
        "decoder-layer MLPs + connector + word embeddings + output head (paper's reading)",
    ),
)
