"""The similarity probe's streaming maths. Layer x layer CKA over a dataset streamed in minibatches
(Nguyen, Raghu & Kornblith 2021).

Each `update` takes one minibatch's features for every layer of model X and of model Y (the same rows:
tokens or examples), computes the HSIC of every layer pair from centred float64 Gram matrices, and keeps
only those L_x x L_y numbers, so memory does not grow with the dataset. `compute()` averages the HSIC terms
over minibatches and normalises: CKA_ij = mean HSIC(K_i, L_j) / sqrt(mean HSIC(K_i, K_i) mean HSIC(L_j, L_j)).
The unbiased HSIC (default) makes the estimate independent of the minibatch size; the per-minibatch terms
also give bootstrap confidence intervals (resampling minibatches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lnprobe.errors import InputError
from lnprobe.probes.similarity.hsic import hsic_pairs
from lnprobe.probes.similarity.tensors import as_float64, center, rbf_gram


def grams(features: Sequence, matmul_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Centred linear Gram matrices `[L, n, n]` (float64) of a list of `[n, d_l]` feature matrices.
    Features are centred in float64; `matmul_dtype=torch.float32` runs the products in float32 (about 2x
    faster on CPUs, far more on GPUs) after that centring, which keeps the error near float32 rounding."""
    mats = [center(as_float64(f, f"layer {i}")) for i, f in enumerate(features)]
    n = {m.shape[0] for m in mats}
    if len(n) != 1:
        raise InputError(f"all layers of a minibatch need the same rows, got {sorted(n)}")
    return torch.stack([(m.to(matmul_dtype) @ m.to(matmul_dtype).T).double() for m in mats])


def rbf_grams(features: Sequence) -> torch.Tensor:
    """Gaussian-kernel Gram matrices `[L, n, n]` (float64), bandwidth = sqrt(median squared distance) of
    each layer's rows (the median heuristic, per minibatch)."""
    return torch.stack([rbf_gram(as_float64(f, f"layer {i}"), None) for i, f in enumerate(features)])


def _centre_gram(g: torch.Tensor) -> torch.Tensor:
    """H K H for a stack of Gram matrices (a no-op, up to rounding, for Grams of centred features)."""
    return g - g.mean(-1, keepdim=True) - g.mean(-2, keepdim=True) + g.mean((-2, -1), keepdim=True)


def hsic_matrix(gx: torch.Tensor, gy: torch.Tensor, debiased: bool = True) -> torch.Tensor:
    """HSIC of every pair (i, j) of Gram stacks `[Lx, n, n]` x `[Ly, n, n]` → `[Lx, Ly]`."""
    n = gx.shape[-1]
    if not debiased:
        return _centre_gram(gx).flatten(1) @ _centre_gram(gy).flatten(1).T / (n - 1) ** 2
    if n < 4:
        raise InputError(f"unbiased HSIC needs at least 4 rows per minibatch, got {n}")
    eye = torch.eye(n, dtype=torch.bool, device=gx.device)
    kx, ky = gx.masked_fill(eye, 0.0), gy.masked_fill(eye, 0.0)
    fx, fy = kx.flatten(1), ky.flatten(1)
    rx, ry = kx.sum(2), ky.sum(2)  # row sums [L, n]
    ones = torch.outer(fx.sum(1), fy.sum(1)) / ((n - 1) * (n - 2))
    return (fx @ fy.T + ones - 2.0 / (n - 2) * (rx @ ry.T)) / (n * (n - 3))


class MinibatchCKA:
    """Streaming layer x layer CKA (linear kernel, or `kernel="rbf"` with the per-minibatch median
    heuristic). `update(xs, ys)`: lists of `[n, d]` per layer (ys=None: the model against itself).
    `compute()` → `[Lx, Ly]` tensor. `matmul_dtype=torch.float32`: linear-kernel products in float32 with
    float64 sums."""

    def __init__(
        self, debiased: bool = True, kernel: str = "linear", matmul_dtype: torch.dtype = torch.float64
    ) -> None:
        if kernel not in ("linear", "rbf"):
            raise InputError(f"unknown kernel {kernel!r} (linear or rbf)")
        self.debiased, self.kernel, self.matmul_dtype = debiased, kernel, matmul_dtype
        self.terms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # per minibatch: xy, xx, yy
        self.null = None  # a `..null.PermutationNull` fed the same minibatches, when one is attached

    def update(self, xs: Sequence, ys: Sequence | None = None) -> None:
        """Add one minibatch. Linear kernel: Gram or feature space by cost (`..hsic`)."""
        if self.kernel == "rbf":
            return self._update_rbf(xs, ys)
        xy, xx, yy = hsic_pairs(xs, ys, self.debiased, self.matmul_dtype)
        self.terms.append((xy.cpu(), xx.cpu(), yy.cpu()))
        if self.null is not None:
            self.null.update(xs, ys)

    def _update_rbf(self, xs: Sequence, ys: Sequence | None) -> None:
        gx = rbf_grams(xs)
        gy = gx if ys is None else rbf_grams(ys)
        if gx.shape[-1] != gy.shape[-1]:
            raise InputError(f"X and Y minibatches differ in rows ({gx.shape[-1]} vs {gy.shape[-1]})")
        self.update_from_grams(gx, gy)

    def update_from_grams(self, gx: torch.Tensor, gy: torch.Tensor) -> None:
        """As `update`, from precomputed `grams()` (two checkpoints compared one after the other)."""
        xy = hsic_matrix(gx, gy, self.debiased)
        xx = torch.diagonal(hsic_matrix(gx, gx, self.debiased))
        yy = torch.diagonal(hsic_matrix(gy, gy, self.debiased))
        self.terms.append((xy.cpu(), xx.cpu(), yy.cpu()))

    def compute(self, which: torch.Tensor | None = None) -> torch.Tensor:
        """CKA matrix from all minibatches (or the minibatch indices `which`, e.g. a bootstrap draw)."""
        if not self.terms:
            raise InputError("no minibatches were added")
        idx = range(len(self.terms)) if which is None else which.tolist()
        xy = torch.stack([self.terms[i][0] for i in idx]).mean(0)
        xx = torch.stack([self.terms[i][1] for i in idx]).mean(0)
        yy = torch.stack([self.terms[i][2] for i in idx]).mean(0)
        denom = torch.sqrt(torch.outer(xx, yy).clamp_min(0))
        if (denom <= 0).any():
            raise InputError("CKA is undefined for a layer with constant features in every minibatch")
        return xy / denom

    def bootstrap(
        self,
        statistic: Callable[[torch.Tensor], torch.Tensor],
        draws: int = 200,
        level: float = 0.95,
        seed: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Percentile interval of `statistic(cka_matrix)` over minibatch resamples (lower, upper)."""
        b = len(self.terms)
        if b < 2:
            raise InputError(f"bootstrap intervals need at least 2 minibatches, got {b}")
        gen = torch.Generator().manual_seed(seed)
        values = torch.stack(
            [statistic(self.compute(torch.randint(b, (b,), generator=gen))) for _ in range(draws)]
        )
        tail = (1 - level) / 2
        return torch.quantile(values, tail, dim=0), torch.quantile(values, 1 - tail, dim=0)


def off_diagonal_mean(matrix: torch.Tensor) -> torch.Tensor:
    """Mean over i != j of a square layer x layer matrix: the paper's cross-layer similarity."""
    n = matrix.shape[0]
    if n < 2 or matrix.shape[1] != n:
        raise InputError(
            f"cross-layer similarity needs a square matrix with >= 2 layers, got {tuple(matrix.shape)}"
        )
    return (matrix.sum() - torch.diagonal(matrix).sum()) / (n * (n - 1))


def cka_matrix(
    features: Sequence, debiased: bool = False, matmul_dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """All-pairs linear CKA `[L, L]` of one set of layers over the same n rows, biased or unbiased, in Gram
    space (one Gram per layer, L n² d / 2, then every pair at once, L² n² / 2) or feature space (|XᵢᵀXⱼ|²,
    n d² per pair), whichever costs less (`..hsic`). With `matmul_dtype=torch.float32` the
    products stay in float32 on the features' device (centred in two passes; at torch's float32 matmul
    precision, TF32 where allowed), summed in float64: the fast path, on GPUs too."""
    h, _, _ = hsic_pairs(features, None, debiased, matmul_dtype)
    d = torch.sqrt(torch.diagonal(h).clamp_min(0))
    if (d <= 0).any():
        raise InputError("CKA is undefined for a layer with constant features")
    return h / torch.outer(d, d)


def cosine_matrix(xs: Sequence, ys: Sequence) -> torch.Tensor:
    """Mean cosine of matched rows for every pair (i, j) with equal widths (NaN otherwise)."""
    out = torch.full((len(xs), len(ys)), float("nan"), dtype=torch.float64)
    nx = [torch.nn.functional.normalize(torch.as_tensor(x).double(), dim=1, eps=1e-12) for x in xs]
    ny = [torch.nn.functional.normalize(torch.as_tensor(y).double(), dim=1, eps=1e-12) for y in ys]
    for i, x in enumerate(nx):
        for j, y in enumerate(ny):
            if x.shape == y.shape:
                out[i, j] = (x * y).sum(1).mean()
    return out


class MinibatchMean:
    """Streaming layer x layer matrix that is the mean over minibatches of a per-minibatch matrix
    `matrix(xs, ys)` → `[Lx, Ly]` (`ys=None`: xs against itself): mutual k-NN and Procrustes, whose
    per-minibatch values do not decompose into sums. `chance(n)`, when given, is the metric's value for
    unrelated rows at n rows, averaged over minibatches by `random_baseline()`. Same `update` / `compute`
    / `bootstrap` as `MinibatchCKA`."""

    def __init__(
        self,
        matrix: Callable[[Sequence, Sequence | None], torch.Tensor],
        chance: Callable[[int], float] | None = None,
    ) -> None:
        self.matrix, self.chance = matrix, chance
        self.terms: list[torch.Tensor] = []
        self.rows: list[int] = []

    def update(self, xs: Sequence, ys: Sequence | None = None) -> None:
        self.terms.append(self.matrix(xs, ys).cpu())
        self.rows.append(torch.as_tensor(xs[0]).shape[0])

    def compute(self, which: torch.Tensor | None = None) -> torch.Tensor:
        if not self.terms:
            raise InputError("no minibatches were added")
        idx = range(len(self.terms)) if which is None else which.tolist()
        return torch.stack([self.terms[i] for i in idx]).mean(0)

    def bootstrap(self, statistic, draws: int = 200, level: float = 0.95, seed: int = 0):
        return MinibatchCKA.bootstrap(self, statistic, draws, level, seed)  # the same minibatch resampling

    def random_baseline(self) -> float | None:
        """The mean over minibatches of `chance(n)` (None without one)."""
        if self.chance is None or not self.rows:
            return None
        return sum(self.chance(n) for n in self.rows) / len(self.rows)


class MinibatchCosine(MinibatchMean):
    """Streaming layer x layer mean cosine: the mean over minibatches of each minibatch's mean cosine of
    matched rows (same `update` / `compute` / `bootstrap` as `MinibatchCKA`)."""

    def __init__(self) -> None:
        super().__init__(lambda xs, ys: cosine_matrix(xs, xs if ys is None else ys))
