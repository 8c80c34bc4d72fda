"""LayerNorm statistics (the paper's mechanism 1: norms act as domain adapters from text to multi-modal),
defined explicitly because the paper does not.

Weight shift of a norm parameter w (tuned) against w0 (base), both `[d]`:
    rel_l2    |w - w0| / |w0|
    cosine    <w, w0> / (|w| |w0|)
    ratio     w_i / w0_i per dimension (dimensions with w0_i = 0 left out): quantiles
    (undefined values -- the relative change or cosine of a zero base, e.g. a zero-initialised bias that
    moved -- are None)
    top       the k dimensions with the largest |w_i - w0_i|

Activation statistics of a norm's input or output over token vectors x_t in R^d (one modality), with all
n*d values pooled:
    mean, variance (population), rms = sqrt(mean x^2), kurtosis (excess, population: m4 / m2^2 - 3)
    dim_mean, dim_std        per-dimension mean and standard deviation over tokens
    outliers                 dimensions whose max_t |x_td| exceeds `factor` x the pooled rms

Modality gap at a site, between image-token and text-token statistics:
    gap = sqrt(mean_d[(mu_img,d - mu_txt,d)^2 + (sd_img,d - sd_txt,d)^2]) / rms_txt
the 2-Wasserstein distance between per-dimension Gaussian fits, per dimension, in units of the text tokens'
RMS (0: the image tokens look like text tokens to every dimension's first two moments).

Accumulation is streaming (per-dimension power sums in float64), so any number of tokens fits in O(d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lnprobe.errors import InputError


def _rel(change: float, base: float) -> float | None:
    """change / base, 0 for no change, None (undefined) for a change of a zero tensor."""
    if change == 0:
        return 0.0
    return change / base if base > 0 else None


def weight_shift(tuned: torch.Tensor, base: torch.Tensor, top_k: int = 5) -> dict:
    """The shift of one norm parameter (see the module docstring)."""
    w, w0 = tuned.detach().double().reshape(-1), base.detach().double().reshape(-1)
    if w.shape != w0.shape:
        raise InputError(f"shapes differ: {tuple(tuned.shape)} vs {tuple(base.shape)}")
    diff = w - w0
    base_norm = float(w0.norm())
    nz = w0 != 0
    ratio = w[nz] / w0[nz]
    qs = torch.tensor([0.0, 0.05, 0.5, 0.95, 1.0], dtype=torch.float64)
    quant = torch.quantile(ratio, qs).tolist() if ratio.numel() else [None] * 5
    top = torch.argsort(diff.abs(), descending=True)[: min(top_k, diff.numel())]
    denom = float(w.norm()) * base_norm
    return {
        "numel": w.numel(),
        "changed": bool((diff != 0).any()),
        "rel_l2": _rel(float(diff.norm()), base_norm),
        "abs_l2": float(diff.norm()),
        "cosine": float(w @ w0) / denom if denom > 0 else None,
        "ratio_quantiles": dict(zip(("min", "p05", "median", "p95", "max"), quant, strict=True)),
        "top_dims": [
            {"dim": int(i), "base": float(w0[i]), "tuned": float(w[i]), "delta": float(diff[i])} for i in top
        ],
    }


class Moments:
    """Streaming statistics of d-dimensional token vectors: per-dimension sums of x and x^2 and the max
    |x|, plus pooled sums of x^3 and x^4 (all float64)."""

    def __init__(self, d: int) -> None:
        self.n = 0
        self.s1 = torch.zeros(d, dtype=torch.float64)
        self.s2 = torch.zeros(d, dtype=torch.float64)
        self.s3 = 0.0
        self.s4 = 0.0
        self.max_abs = torch.zeros(d, dtype=torch.float64)

    def update(self, rows: torch.Tensor) -> None:
        x = rows.detach().double().reshape(-1, self.s1.numel()).cpu()
        if x.shape[0] == 0:
            return
        self.n += x.shape[0]
        self.s1 += x.sum(0)
        sq = x.square()
        self.s2 += sq.sum(0)
        self.s3 += float((sq * x).sum())
        self.s4 += float(sq.square().sum())
        self.max_abs = torch.maximum(self.max_abs, x.abs().amax(0))


@dataclass(frozen=True)
class MomentSummary:
    tokens: int
    mean: float
    variance: float
    rms: float
    kurtosis: float | None
    dim_mean: list[float]
    dim_std: list[float]
    outliers: list[dict]


def summarize_moments(m: Moments, factor: float = 6.0, top_k: int = 10) -> MomentSummary:
    if m.n == 0:
        raise InputError("no tokens to summarise")
    d = m.s1.numel()
    total = m.n * d
    e1, e2 = float(m.s1.sum()) / total, float(m.s2.sum()) / total
    e3, e4 = m.s3 / total, m.s4 / total
    var = max(e2 - e1 * e1, 0.0)
    m4 = e4 - 4 * e1 * e3 + 6 * e1 * e1 * e2 - 3 * e1**4
    rms = math.sqrt(e2)
    dim_mean = m.s1 / m.n
    dim_std = (m.s2 / m.n - dim_mean.square()).clamp_min(0).sqrt()
    over = torch.nonzero(m.max_abs > factor * rms).flatten()
    over = over[torch.argsort(m.max_abs[over], descending=True)][:top_k]
    return MomentSummary(
        tokens=m.n,
        mean=e1,
        variance=var,
        rms=rms,
        kurtosis=m4 / var**2 - 3 if var > 0 else None,
        dim_mean=dim_mean.tolist(),
        dim_std=dim_std.tolist(),
        outliers=[{"dim": int(i), "max_abs": float(m.max_abs[i]), "mean": float(dim_mean[i])} for i in over],
    )


def modality_gap(image: MomentSummary, text: MomentSummary) -> float | None:
    """Per-dimension Gaussian 2-Wasserstein distance between image and text tokens / text RMS."""
    mu_i, mu_t = torch.tensor(image.dim_mean), torch.tensor(text.dim_mean)
    sd_i, sd_t = torch.tensor(image.dim_std), torch.tensor(text.dim_std)
    w2 = float(((mu_i - mu_t).square() + (sd_i - sd_t).square()).mean().sqrt())
    return w2 / text.rms if text.rms > 0 else None
