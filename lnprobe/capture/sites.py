"""Named capture sites of a model, from the site resolver, chosen by glob patterns.

    layer.{i}                     residual stream after decoder layer i
    attn.{i} / mlp.{i}            attention / MLP output of layer i
    input_norm.{i}.in|out         input and output of layer i's input norm (post_attention_norm.{i}.* too)
    final_norm.in|out             the final norm
    connector                     the connector output (one row per image token)
    vision.{i}                    vision-tower layer i output

e.g. `layer.*` (the paper's cross-layer similarity), `input_norm.*.out`, `vision.*`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from lnprobe.errors import InputError
from lnprobe.models.sites import ModelSites


@dataclass(frozen=True)
class Site:
    name: str
    module: str  # module name in the model
    port: str  # "output" or "input"
    side: str  # "text" (one row per sequence position) or "image" (one row per image token / patch)


def catalogue(sites: ModelSites) -> list[Site]:
    """Every capture site of a model, in a stable order."""
    out = [Site(f"vision.{i}", m, "output", "image") for i, m in enumerate(sites.vision_layers)]
    if sites.connector:
        out.append(Site("connector", sites.connector, "output", "image"))
    for i, layer in enumerate(sites.layers):
        for family, module in (
            ("input_norm", sites.input_norms[i]),
            ("post_attention_norm", sites.post_attention_norms[i]),
        ):
            out += [
                Site(f"{family}.{i}.in", module, "input", "text"),
                Site(f"{family}.{i}.out", module, "output", "text"),
            ]
        out += [
            Site(f"attn.{i}", sites.attn[i], "output", "text"),
            Site(f"mlp.{i}", sites.mlp[i], "output", "text"),
            Site(f"layer.{i}", layer, "output", "text"),
        ]
    if sites.final_norm:
        out += [
            Site("final_norm.in", sites.final_norm, "input", "text"),
            Site("final_norm.out", sites.final_norm, "output", "text"),
        ]
    return out


def select_sites(sites: ModelSites, patterns: list[str]) -> list[Site]:
    """Sites whose names match any glob pattern, in catalogue order; InputError for a pattern that matches
    nothing (naming the families that exist)."""
    every = catalogue(sites)
    chosen = []
    for pattern in patterns:
        hits = [s for s in every if fnmatch.fnmatchcase(s.name, pattern)]
        if not hits:
            families = sorted({s.name.split(".")[0] for s in every})
            raise InputError(f"site pattern {pattern!r} matches nothing (families: {', '.join(families)})")
        chosen += [s for s in hits if s not in chosen]
    return sorted(chosen, key=every.index)
