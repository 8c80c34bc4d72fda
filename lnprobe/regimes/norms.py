"""Atom `norms`: every norm of the LLM (the input and post-attention norms of each decoder layer, any other
norm inside a layer, and the final norm). Alone it is the preset `ln-simp`.

Subsets of it are atoms too, written `norms:KIND`, `norms@A-B` or `norms:KIND@A-B` (which norms suffice is
the paper's open question 1): KIND is `input` (each layer's input norm), `post` (its post-attention norm),
`layer` (every norm inside a layer) or `final` (the final norm only, no range); `@A-B` keeps the decoder
layers A..B (inclusive, from 0; `@A` one layer). `norms:input@0-7+connector` composes like any atom."""

from __future__ import annotations

import re

from lnprobe.errors import InputError
from lnprobe.regimes.base import ATOMS, Atom, register_parametric

KINDS = {
    "input": "input norms",
    "post": "post-attention norms",
    "layer": "norms inside the layers",
    "final": "the final norm",
}
PATTERN = re.compile(r"norms(?::(?P<kind>[a-z]+))?(?:@(?P<a>\d+)(?:-(?P<b>\d+))?)?")


def _select(model, sites, options):
    return list(sites.lm_norms())


ATOMS.add("norms", Atom("norms", "LLM norms", _select, whole_modules=True))


def norm_subset(part: str) -> Atom | None:
    """The atom `part` names when it is a norm subset (`norms:input@0-7`), None when it is not of that
    form; InputError for a malformed one."""
    match = PATTERN.fullmatch(part)
    if match is None or part == "norms":
        return None
    kind, a, b = match["kind"] or "layer", match["a"], match["b"]
    if kind not in KINDS:
        raise InputError(f"atom {part!r}: unknown norm kind {kind!r} (known: {', '.join(KINDS)})")
    if kind == "final" and a is not None:
        raise InputError(f"atom {part!r}: the final norm takes no layer range")
    span = None if a is None else (int(a), int(b if b is not None else a))
    if span is not None and span[0] > span[1]:
        raise InputError(f"atom {part!r}: empty layer range {span[0]}-{span[1]}")
    where = "" if span is None else f" of layers {span[0]}-{span[1]}"
    return Atom(part, KINDS[kind] + where, lambda model, sites, options: _subset(part, kind, span, sites),
                whole_modules=True)  # fmt: skip


def _subset(part: str, kind: str, span: tuple[int, int] | None, sites) -> list[str]:
    if kind == "final":
        return [sites.final_norm] if sites.final_norm else []
    n = len(sites.layers)
    if span is not None and span[1] >= n:
        raise InputError(f"atom {part!r}: the model has {n} decoder layers (0-{n - 1})")
    keep = range(n) if span is None else range(span[0], span[1] + 1)
    per_layer = {
        "input": [(x,) for x in sites.input_norms],
        "post": [(x,) for x in sites.post_attention_norms],
    }
    chosen = per_layer.get(kind, sites.layer_norms)
    return [name for i in keep for name in chosen[i]]


register_parametric(norm_subset)
