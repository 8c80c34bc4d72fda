"""The patching statistics, over per-example mean answer-token losses on the same examples.

With l_base, l_tuned and l_patched the per-example losses of the base model, the tuned model and a patched
one (the n examples in the same order; L_x = mean over examples of l_x):

    recovered (tuned norms patched into the base)   (L_base - L_patched) / (L_base - L_tuned)
    lost      (base norms patched into the tuned)    (L_patched - L_tuned) / (L_base - L_tuned)

1 means the patched unit carries the whole adaptation (into base: the patched base does as well as the tuned
model; out of tuned: the tuned model loses all it gained), 0 none of it. Undefined (None) when
L_base == L_tuned: nothing to recover.

Interval: paired percentile bootstrap over examples. Resample the n examples with replacement (the same
draws for every loss vector and every condition), recompute the ratio, take the 2.5 % and 97.5 % quantiles;
draws whose denominator is exactly 0 are left out (None when all are). `gap_ci95` is the same interval for
the denominator L_base - L_tuned: when it contains 0 the fractions are ratios of noise.
"""

from __future__ import annotations

import torch


def resample_indices(n: int, draws: int, seed: int) -> torch.Tensor:
    """`[draws, n]` indices of n examples drawn with replacement (seeded)."""
    return torch.randint(0, n, (draws, n), generator=torch.Generator().manual_seed(seed))


def _quantiles(values: torch.Tensor) -> list[float] | None:
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return None
    q = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=values.dtype))
    return [float(q[0]), float(q[1])]


def gap(base: torch.Tensor, tuned: torch.Tensor, idx: torch.Tensor) -> dict:
    """L_base - L_tuned with its bootstrap interval."""
    d = base.double() - tuned.double()
    return {"value": float(d.mean()), "ci95": _quantiles(d[idx].mean(1))}


def fraction(
    minuend: torch.Tensor,
    subtrahend: torch.Tensor,
    base: torch.Tensor,
    tuned: torch.Tensor,
    idx: torch.Tensor,
) -> dict:
    """(mean minuend - mean subtrahend) / (mean base - mean tuned), with its paired bootstrap interval
    (`idx` from `resample_indices`). recovered: fraction(base, patched, ...); lost: fraction(patched,
    tuned, ...)."""
    num = minuend.double() - subtrahend.double()
    den = base.double() - tuned.double()
    d = float(den.mean())
    value = float(num.mean()) / d if d != 0 else None
    nums, dens = num[idx].mean(1), den[idx].mean(1)
    ok = dens != 0
    ci = _quantiles(nums[ok] / dens[ok]) if value is not None else None
    return {"value": value, "ci95": ci}
