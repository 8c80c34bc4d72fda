"""Gradient statistics (the paper's mechanism 3: "LayerNorm tuning gives smaller gradient variance"),
defined explicitly because the paper does not:

For a parameter group g (e.g. the norm weights of decoder layer i) with p parameters, let G_t ∈ R^p be its
gradient on micro-batch t = 1..T. With μ = mean_t G_t and Σ the per-element variance over t (unbiased),

    variance    = tr(Σ) / p                  mean per-element variance of the gradient
    mean_sq     = mean_t |G_t|² / p          mean squared gradient, per element
    noise_scale = tr(Σ) / |μ|²               the gradient noise scale (McCandlish et al. 2018, B_simple)

Streaming and exact: a Welford / Chan accumulator in float64 keeps only the mean and the sum of squared
deviations per element, so memory is 2p whatever T is, and merging chunks equals one pass over all samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lnprobe.errors import InputError

TRACE_FILE = "gradvar_trace.safetensors"  # a run's per-sample norm gradients: `norm_grads` [N, P]


class Welford:
    """Per-element running mean and sum of squared deviations of p-dimensional samples (float64)."""

    def __init__(self, p: int) -> None:
        self.count = 0
        self.mean = torch.zeros(p, dtype=torch.float64)
        self.m2 = torch.zeros(p, dtype=torch.float64)
        self.sq_norm_sum = 0.0

    def update(self, samples: torch.Tensor) -> None:
        """Add one sample `[p]` or a batch `[k, p]` (Chan et al.'s parallel merge; for one sample Welford's
        own update, in place: at a 135M-parameter model's every-step recording the merge's temporaries cost
        more than the training step, benchmarks/RESULTS.md gradvar_update)."""
        x = samples.detach().to(torch.float64).reshape(-1, self.mean.numel()).cpu()
        k = x.shape[0]
        if k == 0:
            return
        if k == 1:
            shared = x.untyped_storage().data_ptr() == samples.untyped_storage().data_ptr()
            self._update_one(x[0].clone() if shared else x[0])  # never overwrite the caller's tensor
            return
        batch_mean = x.mean(0)
        batch_m2 = (x - batch_mean).square().sum(0)
        total = self.count + k
        delta = batch_mean - self.mean
        self.mean += delta * (k / total)
        self.m2 += batch_m2 + delta.square() * (self.count * k / total)
        self.count = total
        self.sq_norm_sum += float(x.square().sum())

    def _update_one(self, x: torch.Tensor) -> None:
        """Welford's update with one sample x (float64, `[p]`, a copy this object may overwrite):
        delta = x - mean; mean += delta / n; m2 += delta * (x - new mean)."""
        self.sq_norm_sum += float(torch.dot(x, x))
        self.count += 1
        delta = x.sub_(self.mean)  # x is a fresh float64 copy: reuse it for delta
        self.mean.add_(delta, alpha=1.0 / self.count)
        after = delta * (1.0 - 1.0 / self.count)  # x - new mean = delta * (n - 1) / n
        self.m2.addcmul_(delta, after)

    def variance(self) -> torch.Tensor:
        if self.count < 2:
            raise InputError(f"a variance needs at least 2 gradient samples, got {self.count}")
        return self.m2 / (self.count - 1)


@dataclass(frozen=True)
class GradSummary:
    count: int
    numel: int
    variance: float
    mean_sq: float
    noise_scale: float
    mean_norm: float


def summarize(acc: Welford) -> GradSummary:
    p = acc.mean.numel()
    trace = float(acc.variance().sum())
    mu2 = float(acc.mean.square().sum())
    return GradSummary(
        count=acc.count,
        numel=p,
        variance=trace / p,
        mean_sq=acc.sq_norm_sum / (acc.count * p),
        noise_scale=trace / mu2 if mu2 > 0 else float("inf"),
        mean_norm=mu2**0.5,
    )


class GradStats:
    """Welford accumulators for named parameter groups; `update({group: flat gradient})` per sample."""

    def __init__(self) -> None:
        self.groups: dict[str, Welford] = {}

    def update(self, grads: dict[str, torch.Tensor]) -> None:
        for name, g in grads.items():
            flat = g.detach().reshape(-1)
            acc = self.groups.get(name)
            if acc is None:
                acc = self.groups[name] = Welford(flat.numel())
            elif acc.mean.numel() != flat.numel():
                raise InputError(
                    f"group {name}: gradient size changed from {acc.mean.numel()} to {flat.numel()}"
                )
            acc.update(flat)

    def update_rows(self, rows: dict[str, torch.Tensor]) -> None:
        """Add several samples per group at once (`[k, p]` rows, e.g. one per token)."""
        for name, r in rows.items():
            acc = self.groups.get(name)
            if acc is None:
                acc = self.groups[name] = Welford(r.shape[-1])
            acc.update(r.reshape(-1, r.shape[-1]))

    def summary(self) -> dict[str, GradSummary]:
        return {name: summarize(acc) for name, acc in self.groups.items()}


def group_order(group: str) -> tuple[int, str]:
    kind, _, index = group.partition(".")
    return (int(index) if index.isdigit() else 10**6, kind)


def is_norm_group(group: str) -> bool:
    return group.startswith("norms.") or group == "final_norm"


def group_kind(group: str) -> str:
    """`norms.3` → norms; final_norm counts as norms; connector / embeddings / head are their own kind."""
    return "norms" if is_norm_group(group) else group.partition(".")[0]


def pooled(members: list[GradSummary]) -> dict:
    """The statistics of the union of several groups (e.g. every layer's norms): variance and mean square
    weighted by size; the noise scale from the summed trace and squared mean norms."""
    p = sum(m.numel for m in members)
    trace = sum(m.variance * m.numel for m in members)
    mu2 = sum(m.mean_norm**2 for m in members)
    return {
        "count": min(m.count for m in members),
        "numel": p,
        "variance": trace / p,
        "mean_sq": sum(m.mean_sq * m.numel for m in members) / p,
        "noise_scale": trace / mu2 if mu2 > 0 else float("inf"),
        "mean_norm": mu2**0.5,
    }


def log_variance_se(
    samples: torch.Tensor, slices: dict[str, tuple[int, int]]
) -> dict[str, tuple[float, float]]:
    """(log variance, its jackknife standard error) per column slice of per-sample gradients `[T, P]`:
    leave-one-sample-out variances in closed form, logged, and the jackknife spread of those logs,
    se = sqrt((T-1)/T Σ (log v₋ᵢ − mean)²). On the log scale an interval exp(log v ± 1.96 se) is positive
    by construction and compares two models as a ratio. Needs T >= 3 and a non-zero variance."""
    t = samples.shape[0]
    if t < 3:
        return {}
    x = samples.double()
    x = x - x.mean(0)
    s1, s2 = x.sum(0), x.square().sum(0)
    loo_mean = (s1 - x) / (t - 1)  # [T, P]: each column's mean without sample i
    loo = (s2 - x.square() - (t - 1) * loo_mean.square()) / (t - 2)  # its unbiased variance without i
    full = s2 / (t - 1)
    out = {}
    for name, (a, b) in slices.items():
        estimate, per = float(full[a:b].mean()), loo[:, a:b].mean(1)
        if estimate <= 0 or bool((per <= 0).any()):
            continue
        logs = per.log()
        se = float(((t - 1) / t * (logs - logs.mean()).square().sum()).sqrt())
        out[name] = (math.log(estimate), se)
    return out


def variance_intervals(
    samples: torch.Tensor, slices: dict[str, tuple[int, int]]
) -> dict[str, tuple[float, float]]:
    """95 % intervals of `variance` (tr(Σ)/p) for column slices of per-sample gradients `[T, P]`:
    exp(log v ± 1.96 se) with the jackknife se of log v (`log_variance_se`), so the interval is positive
    and asymmetric like the variance's own distribution. The jackknife is chosen over the bootstrap because
    a resample repeats samples, which biases a variance low by about (T-1)/T. For T Gaussian samples of
    one parameter the interval's coverage is tested (tests/probes/test_gradvar_stats.py): ~0.9 at T = 8,
    ~0.94 at T = 64; heavy tails lower it."""
    out = {}
    for name, (log_v, se) in log_variance_se(samples, slices).items():
        out[name] = (math.exp(log_v - 1.959964 * se), math.exp(log_v + 1.959964 * se))
    return out
