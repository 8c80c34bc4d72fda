"""Massive-activation tokens ("attention sinks"): found per site and example, left out of the statistics.

Pretrained LLMs park a few tokens -- most often the first -- at a hidden-state norm two orders of magnitude
above every other token's (Sun et al. 2024, "Massive activations in large language models"; Xiao et al.
2024, attention sinks). One such row dominates any second-moment statistic: in SmolLM2-135M-Instruct the
first token's norm is ~20,000-25,000 at layers 11-27 against a median of 130-660, and linear CKA between
layers 15, 20 and 25 is 1.00 with it and 0.76-0.94 without it (8 texts of 32 tokens). So the probes
leave such tokens out unless told to keep them (`--keep-sink-tokens`).

The rule, per text-side capture site s (one row per sequence position) and example e, over e's real
(non-padding) tokens of the same kind as t (image tokens, or the others):

    token t is massive at s  when  ||h_s[e, t]||_2 > factor x median_{t' of t's kind} ||h_s[e, t']||_2

(the lower median; `factor` 20 by default). Image tokens are judged among image tokens because a whole
modality may sit at another scale without any token being a sink: the miniature's connector puts image
tokens at 23-31x the text tokens' median norm at the decoder's input, and a real LLaVA's does the same;
against their own median they are ordinary. A token is excluded from every
site's rows when it is massive at ANY of the sites being captured, so the rows stay aligned across
layers. Why 20: in SmolLM2 the sink's ratio is 32-180 at layers 11-27 (41-52 at layer 25, 87-107 at layer
20, 116-142 at layer 15), while no other token exceeds 1.5 there and none exceeds 10 at any layer (the
first token's 5-12 at layers 1-8 and 28-29 is large, not massive, and stays); the tiny models' and
MiniLM-L6's largest ratios are 7.6 and 2.2, so nothing is excluded there. Sun et al. flag single
activations (|x| > 100 and ~1,000x the median |x| of the hidden state); a token's L2 norm dilutes its few
massive dimensions over the rest, hence a smaller factor here, and no absolute threshold (it would depend
on each model's scale). Only text-side sites are examined: image-side rows (vision tower, connector) are
kept as they are.

Pooled selections (`mean`, `last`) pool over the kept tokens. A rule that leaves a minibatch with no
selected token, or an example with nothing to pool, is an InputError (exit 2), not an empty statistic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DEFAULT_FACTOR = 20.0


@dataclass(frozen=True)
class SinkRule:
    """How massive tokens are found (`factor`) and whether they are left out (`exclude`); with
    `exclude=False` they are still found and recorded, and kept in the rows."""

    factor: float = DEFAULT_FACTOR
    exclude: bool = True

    def text(self) -> str:
        return (
            f"a token whose hidden-state L2 norm exceeds {self.factor:g} x the median norm of its example's "
            "tokens of the same kind (image or text) at a compared site is massive; it is "
            + (
                "excluded from every site's rows (massive at any compared site)"
                if self.exclude
                else "kept (--keep-sink-tokens)"
            )
        )


@dataclass
class Sinks:
    """One minibatch's massive tokens. `mask` `[batch, positions]`: massive at any examined site;
    `where`: per site, `(row, position, norm, median)` of each token massive there."""

    mask: torch.Tensor
    where: dict[str, list[tuple[int, int, float, float]]] = field(default_factory=dict)

    def tokens(self) -> list[dict]:
        """Per massive token, in (row, position) order: {row, position, sites: {site: {norm, median}}}."""
        found: dict[tuple[int, int], dict] = {}
        for site, hits in self.where.items():
            for row, pos, norm, median in hits:
                entry = found.setdefault((row, pos), {"row": row, "position": pos, "sites": {}})
                entry["sites"][site] = {"norm": round(norm, 3), "median": round(median, 3)}
        return [found[k] for k in sorted(found)]


def token_norms(h: torch.Tensor) -> torch.Tensor:
    """`[batch, positions]` L2 norms (float32) of `h` `[batch, positions, d]` (half-precision states are
    widened first: a sink's squared norm overflows float16)."""
    return (h if h.dtype == torch.float32 else h.float()).norm(dim=-1)


def find_sinks(
    norms: dict[str, torch.Tensor], real: torch.Tensor, factor: float, image: torch.Tensor | None = None
) -> Sinks:
    """The massive tokens of one minibatch from each site's token norms `[batch, positions]`, the real
    (non-padding) positions `real` `[batch, positions]` and, for a multi-modal model, the image-token
    positions `image` (judged against their own median; see the module docstring)."""
    kinds = [real] if image is None else [real & image.to(real.device), real & ~image.to(real.device)]
    mask = torch.zeros_like(real, dtype=torch.bool)
    where = {}
    for site, n in norms.items():
        n = n.to(real.device)
        medians = torch.zeros_like(n)  # each token's own kind's median in its example
        massive = torch.zeros_like(mask)
        for kind in kinds:
            median = n.masked_fill(~kind, float("nan")).nanmedian(dim=1).values  # [batch], lower median
            medians = torch.where(kind, median.unsqueeze(1), medians)
            massive |= kind & (n > factor * median.unsqueeze(1))
        if massive.any():
            rows, positions = massive.nonzero(as_tuple=True)
            where[site] = [
                (int(r), int(p), float(n[r, p]), float(medians[r, p]))
                for r, p in zip(rows.tolist(), positions.tolist(), strict=True)
            ]
            mask |= massive
    return Sinks(mask, where)


class SinkLog:
    """The massive tokens a probe met, for its output JSON: the rule, and per token the model, the
    example (its index in the data file), the position, and each site where it was massive with its
    norm and its example's median norm there."""

    def __init__(self, rule: SinkRule) -> None:
        self.rule = rule
        self.tokens: list[dict] = []

    def add(self, sinks: Sinks | None, examples: list[int], model: str | None = None) -> None:
        """Record one minibatch's findings; `examples[row]` is the data index of the minibatch's row."""
        if sinks is None:
            return
        for token in sinks.tokens():
            entry = {} if model is None else {"model": model}
            entry |= {"example": int(examples[token["row"]]), "position": token["position"]}
            self.tokens.append(entry | {"sites": token["sites"]})

    def to_json(self) -> dict:
        """{rule, factor, excluded, count, tokens}: `excluded` says whether the tokens were left out."""
        return {
            "rule": self.rule.text(),
            "factor": self.rule.factor,
            "excluded": self.rule.exclude,
            "count": len(self.tokens),
            "tokens": self.tokens,
        }
