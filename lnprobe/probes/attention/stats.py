"""The attention-to-image statistic and its intervals.

For one example e, one decoder layer l and one head h, with A[q, k] the attention weights of that head
(softmax rows, eager attention) over the example's tokens:

    Q_e   the query positions: real tokens (attention_mask 1) that are not image tokens and come after the
          example's first image token (the text that can see the image under the causal mask)
    I_e   the key positions holding image tokens (input_ids == the image token id)
    share[e, l, h] = (1 / |Q_e|) * sum over q in Q_e of ( sum over k in I_e of A[q, k] )

i.e. the mean over the text tokens after the image of the attention mass they put on image tokens (0: none,
1: all of it). An example without image tokens has no Q_e and is left out. Reported per model: the mean
over examples per (layer, head); the layer mean (mean over heads) and the overall mean (over layers and
heads) of the same per-example values; and for each model after the first its difference from the first
(per-example differences, paired on the same examples).

Interval: percentile bootstrap over examples: resample the n examples with replacement (the same draws for
every model, cell and difference, so differences are paired), recompute the mean, take the 2.5 % and
97.5 % quantiles of the draws.
"""

from __future__ import annotations

import torch

from lnprobe.probes.patch.stats import resample_indices


def query_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int) -> torch.Tensor:
    """`[batch, tokens]` bool: real, non-image tokens after the row's first image token (none in a row
    without image tokens)."""
    image = input_ids == image_token_id  # [batch, tokens]
    seen = image.long().cumsum(1) > 0  # at or after the first image token
    return seen & ~image & attention_mask.bool()


def image_share(weights: torch.Tensor, image: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """`[batch, heads]` float64: per row and head, the mean over query positions (`query`, `[batch, q]`)
    of the attention mass (`weights`, `[batch, heads, q, k]`) on the image keys (`image`, `[batch, k]`);
    NaN for a row without query positions."""
    mass = torch.einsum("bhqk,bk->bhq", weights.float(), image.float()).double()  # [batch, heads, q]
    q = query.double()[:, None, :]  # [batch, 1, q]
    return (mass * q).sum(-1) / q.sum(-1)


def resample_counts(n: int, draws: int, seed: int) -> torch.Tensor:
    """`[draws, n]` float64: how often each example is drawn in each bootstrap resample
    (`resample_indices`, with replacement, seeded)."""
    idx = resample_indices(n, draws, seed)
    return torch.zeros(draws, n, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones_like(idx, dtype=torch.float64)
    )


def mean_ci(values: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean over examples, 2.5 % and 97.5 % bootstrap quantiles), each of `values`' shape without its
    first dimension (`values`: `[n, ...]`; `counts`: `[draws, n]` from `resample_counts`)."""
    n = values.shape[0]
    flat = values.double().reshape(n, -1)  # [n, cells]
    draws = counts @ flat / n  # [draws, cells]: each resample's mean
    q = torch.quantile(draws, torch.tensor([0.025, 0.975], dtype=torch.float64), dim=0)  # [2, cells]
    shape = values.shape[1:]
    return flat.mean(0).reshape(shape), q[0].reshape(shape), q[1].reshape(shape)


def summarise(values: torch.Tensor, counts: torch.Tensor) -> dict:
    """`values`: `[n, layers, heads]` per-example shares (or their differences). {share: {value,
    ci95_low, ci95_high} as [layers][heads] lists, layer_mean: {value [layers], ci95 [[lo, hi]] per
    layer}, mean: {value, ci95}}."""
    cell, lo, hi = mean_ci(values, counts)
    layer, layer_lo, layer_hi = mean_ci(values.mean(-1), counts)
    overall, all_lo, all_hi = mean_ci(values.mean((1, 2)), counts)
    return {
        "share": {"value": cell.tolist(), "ci95_low": lo.tolist(), "ci95_high": hi.tolist()},
        "layer_mean": {
            "value": layer.tolist(),
            "ci95": [[a, b] for a, b in zip(layer_lo.tolist(), layer_hi.tolist(), strict=True)],
        },
        "mean": {"value": float(overall), "ci95": [float(all_lo), float(all_hi)]},
    }
