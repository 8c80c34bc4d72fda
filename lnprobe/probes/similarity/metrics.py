"""The metric registry (`METRICS`: CKA, cosine, mutual k-NN from `.knn`, Procrustes from `.procrustes`), and
centred kernel alignment (Kornblith et al. 2019), with the debiased estimator (Song et al. 2012 unbiased
HSIC; Nguyen, Raghu & Kornblith 2021) and a minibatch accumulator.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),  K = X Xᵀ, L = Y Yᵀ for the linear kernel.

Linear CKA, biased or unbiased, is computed in feature space (d x d products, O(n d²)) or Gram space (n x n,
O(n² d)), whichever costs less for the shapes at hand (`..hsic`); both give the same number
(tested). Features are centred and everything accumulates in float64, so float32 input with large offsets
loses nothing. `hsic_unbiased_gram` and `_hsic_unbiased_feature` state the two single-pair forms plainly.

The biased estimator is positive even for independent features: about d/(n+d) for random Gaussians, so
`random_baseline` reports it for the shapes at hand (permuting rows of Y breaks the pairing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lnprobe.errors import InputError
from lnprobe.probes.similarity import knn, procrustes
from lnprobe.probes.similarity.hsic import check_matrix, hsic_pairs
from lnprobe.probes.similarity.stats import MinibatchCKA, MinibatchCosine, MinibatchMean
from lnprobe.probes.similarity.tensors import pair, rbf_gram
from lnprobe.registry import Registry


def linear_cka(x, y, debiased: bool = False, matmul_dtype: torch.dtype = torch.float64) -> float:
    """Linear CKA of `[n, dx]` and `[n, dy]` matched rows, in Gram or feature space, whichever is cheaper.
    `matmul_dtype=torch.float32`: products in float32, sums in float64 (see `..hsic`)."""
    a, b = check_matrix(x, "X"), check_matrix(y, "Y")
    n = a.shape[0]
    if a.shape[0] != b.shape[0]:
        raise InputError(f"X and Y must have the same rows (examples), got {a.shape[0]} and {b.shape[0]}")
    if debiased and n < 4:
        raise InputError(f"debiased CKA needs at least 4 examples, got {n}")
    hxy, hxx, hyy = hsic_pairs([a], [b], debiased, matmul_dtype, names=("X", "Y"))
    return _ratio(hxy[0, 0], hxx[0], hyy[0])


def _ratio(hxy: torch.Tensor, hxx: torch.Tensor, hyy: torch.Tensor) -> float:
    denom = torch.sqrt(hxx * hyy)
    if denom <= 0:
        raise InputError("CKA is undefined for constant features (zero variance)")
    return float(hxy / denom)


def hsic_unbiased_gram(k: torch.Tensor, l_: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC from Gram matrices (Song et al. 2012): diagonals zeroed, n >= 4."""
    n = k.shape[0]
    k = k - torch.diag(torch.diagonal(k))
    l_ = l_ - torch.diag(torch.diagonal(l_))
    kl = (k * l_).sum()
    ones = k.sum() * l_.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (k.sum(1) @ l_.sum(1))
    return (kl + ones - cross) / (n * (n - 3))


def _hsic_unbiased_feature(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same estimator from features, without n x n matrices (the form `..hsic` generalises to
    many layers): with kx_i = |x_i|², sx = Σ x_i,
    tr(K̃L̃) = |XᵀY|² - Σ kx ky, 1ᵀK̃1 = |sx|² - Σ kx, K̃1 = X sx - kx."""
    n = x.shape[0]
    kx, ky = x.square().sum(1), y.square().sum(1)
    sx, sy = x.sum(0), y.sum(0)
    kl = (y.T @ x).square().sum() - (kx * ky).sum()
    k1, l1 = sx.square().sum() - kx.sum(), sy.square().sum() - ky.sum()
    rk, rl = x @ sx - kx, y @ sy - ky
    return (kl + k1 * l1 / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rk @ rl)) / (n * (n - 3))


def rbf_cka(x, y, sigma: float | None = None, debiased: bool = False) -> float:
    """CKA with Gaussian kernels; `sigma` = sqrt(median squared distance) of each input when None;
    `debiased`: unbiased HSIC (n >= 4), as the `rbf_cka` metric and `lnprobe similarity` use."""
    a, b = pair(x, y)
    k, l_ = rbf_gram(a, sigma), rbf_gram(b, sigma)
    n = k.shape[0]
    if debiased:
        if n < 4:
            raise InputError(f"debiased CKA needs at least 4 examples, got {n}")
        return _ratio(hsic_unbiased_gram(k, l_), hsic_unbiased_gram(k, k), hsic_unbiased_gram(l_, l_))
    h = torch.eye(n, dtype=k.dtype, device=k.device) - 1.0 / n
    kc, lc = h @ k @ h, h @ l_ @ h
    return _ratio((kc * lc).sum(), kc.square().sum(), lc.square().sum())


def random_baseline(x, y, repeats: int = 5, seed: int = 0) -> float:
    """Mean biased linear CKA after shuffling the rows of Y (what unrelated features would score)."""
    a, b = pair(x, y)
    gen = torch.Generator().manual_seed(seed)
    scores = [linear_cka(a, b[torch.randperm(b.shape[0], generator=gen)]) for _ in range(repeats)]
    return sum(scores) / len(scores)


def cosine_similarity(x, y) -> float:
    """Mean over rows of cos(x_i, y_i); X and Y need the same width. Zero rows count as 0."""
    a, b = pair(x, y)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"cosine similarity needs equal widths, got {a.shape[1]} and {b.shape[1]}")
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).mean())


@dataclass(frozen=True)
class Metric:
    """A similarity metric: `fn(X, Y)` on one pair of `[n, d]` matrices, and `accumulator()` for the
    streaming layer x layer form (`update(xs, ys)`, `compute()`, `bootstrap(...)`) that `lnprobe similarity`
    runs over minibatches."""

    name: str
    fn: Callable[..., float]
    accumulator: Callable[[], object]
    summary: str
    min_n: int = 2  # fewest rows the estimator needs


METRICS: Registry[Metric] = Registry("metric")


def _accumulator(**kw) -> Callable[[], object]:
    def make():
        return MinibatchCosine() if kw.get("kernel") == "cosine" else MinibatchCKA(**kw)

    return make


# One name per estimator everywhere (this registry, `lnprobe similarity --metric`, similarity.json).
METRICS.add(
    "cka",
    Metric(
        "cka",
        lambda x, y: linear_cka(x, y, debiased=True),
        _accumulator(debiased=True),
        "linear CKA with unbiased HSIC (Song et al. 2012; Nguyen et al. 2021)",
        min_n=4,
    ),
)
METRICS.add(
    "cka_biased",
    Metric(
        "cka_biased",
        linear_cka,
        _accumulator(debiased=False),
        "linear CKA, biased HSIC (Kornblith et al. 2019), with its random baseline",
    ),
)
METRICS.add(
    "rbf_cka",
    Metric(
        "rbf_cka",
        lambda x, y: rbf_cka(x, y, debiased=True),
        _accumulator(debiased=True, kernel="rbf"),
        "CKA with Gaussian kernels (median-heuristic bandwidth), unbiased HSIC",
        4,
    ),
)
METRICS.add(
    "cosine",
    Metric(
        "cosine",
        cosine_similarity,
        _accumulator(kernel="cosine"),
        "mean cosine of matched token/example vectors (equal widths)",
        1,
    ),
)
METRICS.add(
    "mutual_knn",
    Metric(
        "mutual_knn",
        knn.mutual_knn,
        lambda: MinibatchMean(knn.mutual_knn_matrix, knn.chance),
        f"mutual k-NN alignment, k={knn.K}, cosine neighbours within each minibatch (Huh et al. 2024)",
        knn.K + 1,
    ),
)
METRICS.add(
    "procrustes",
    Metric(
        "procrustes",
        procrustes.procrustes_similarity,
        lambda: MinibatchMean(procrustes.procrustes_matrix),
        "Procrustes shape similarity cos θ = ‖XᵀY‖_* / (‖X‖_F ‖Y‖_F), centred (Williams et al. 2021)",
        2,
    ),
)
