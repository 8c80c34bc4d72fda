"""Linear HSIC of many layer pairs at once: the one engine behind `linear_cka`, `cka_matrix` and
`MinibatchCKA.update`.

For centred features X `[n, dx]`, Y `[n, dy]` with K = X Xᵀ, L = Y Yᵀ, every estimator needs <K, L>_F, which
is computed in whichever space is cheaper for the shapes at hand (the answer is the same):

    Gram space     <K, L>_F over n x n Grams            ~ n² Σ d / 2 + n² L² / 2 multiply-adds
    feature space  <K, L>_F = |Xᵀ Y|²_F over d x d       ~ n Σ_pairs dx dy multiply-adds

Gram space computes only the lower block triangle of each (symmetric) Gram. The biased HSIC is
<K, L> / (n - 1)². The unbiased HSIC (Song et al. 2012) adds O(n d) terms, from kx_i = |x_i|² and
sx = Σ x_i (K̃: K with a zeroed diagonal):

    <K̃, L̃> = <K, L> - kx·ky    (Gram space zeroes the diagonal instead: no cancellation when n << d)
    1ᵀK̃1 = |sx|² - Σ kx,   K̃1 = X sx - kx
    HSIC₁ = (<K̃, L̃> + 1ᵀK̃1 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) K̃1·L̃1) / (n (n-3))

With `dtype=torch.float64` everything is float64. With `torch.float32` features are centred in float32 in
two passes, the Gram / feature products run in float32 at torch's float32 matmul precision (TF32 where
`torch.set_float32_matmul_precision` allows it: the GPU fast path), and every sum over products is float64
(Gram space: full-float32 partial sums of 4096 terms added in float64; feature space: the d x d products
squared and summed in float64; the O(n d) terms in float64 where they matter), so results stay within
~1e-7 of float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lnprobe.errors import InputError
from lnprobe.probes.similarity.tensors import as_float64

CHUNK = 1 << 12  # float32 partial sums over this many terms, added in float64


def check_matrix(x, name: str) -> torch.Tensor:
    """`x` as a tensor; InputError unless it is an `[n, d]` matrix."""
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise InputError(f"{name}: expected an [n, d] matrix, got shape {tuple(t.shape)}")
    return t


def centred(features: Sequence, names: Sequence[str], dtype: torch.dtype) -> list[torch.Tensor]:
    """Column-centred copies in `dtype`, on the first input's device (finiteness is checked once, on the
    result: a NaN or inf anywhere in a column reaches every HSIC of its layer). float32 features are
    centred in two passes (the second removes the rounding of the first mean, which would dominate layers
    whose spread is near float32 resolution, e.g. saturated units)."""
    mats = []
    for f, name in zip(features, names, strict=True):
        c = check_matrix(f, name).to(dtype)
        c = c - c.mean(0)
        mats.append(c if dtype == torch.float64 else c.sub_(c.mean(0)))
    device = mats[0].device
    return [m.to(device) for m in mats]


def use_feature_space(n: int, dims: Sequence[int], pairs: Sequence[tuple[int, int]]) -> bool:
    """Whether |XᵢᵀXⱼ|² over the needed `pairs` (i >= j) costs fewer multiply-adds than one Gram per layer
    plus the products of every Gram pair (Gram space computes only the lower block triangles)."""
    gram = n * n * (sum(dims) + len(dims) ** 2) / 2
    feature = n * sum(dims[i] * dims[j] for i, j in pairs)
    return feature < gram


def inner_products(
    mats: list[torch.Tensor],
    pairs: Sequence[tuple[int, int]],
    zero_diagonal: bool,
    space: str | None = None,
    blocks: int | None = None,
) -> tuple[torch.Tensor, bool]:
    """float64 `[L, L]` of <K_i, K_j>_F (the needed `pairs` at least; K with a zeroed diagonal when
    `zero_diagonal` and the Gram space is used), and whether the Gram space was used."""
    n, dims = mats[0].shape[0], [m.shape[1] for m in mats]
    gram = space == "gram" if space else not use_feature_space(n, dims, pairs)
    if gram:
        return _gram_space(mats, zero_diagonal, blocks), True
    return _feature_space(mats, pairs), False


def _gram_space(mats: list[torch.Tensor], zero_diagonal: bool, blocks: int | None) -> torch.Tensor:
    """<K_i, K_j> for every pair from the lower block triangle of each Gram: with k row blocks, the
    diagonal blocks count once and the off-diagonal ones twice (scaled by sqrt 2 inside the product), which
    costs (k + 1) / 2k of the full product. All pairs at once: one batched product of the flat triangles."""
    n, cuda = mats[0].shape[0], mats[0].is_cuda
    k = blocks or (min(2, n // 1024) if cuda else min(8, n // 512)) or 1
    edges = [n * i // k for i in range(k + 1)]
    spans = [(a, b) for a in range(k) for b in range(a + 1)]
    size = sum((edges[a + 1] - edges[a]) * (edges[b + 1] - edges[b]) for a, b in spans)
    flat = torch.zeros(len(mats), -(-size // CHUNK) * CHUNK, dtype=mats[0].dtype, device=mats[0].device)
    for i, m in enumerate(mats):
        at = 0
        for a, b in spans:
            ra, rb = m[edges[a] : edges[a + 1]], m[edges[b] : edges[b + 1]]
            block = flat[i, at : at + ra.shape[0] * rb.shape[0]].view(ra.shape[0], rb.shape[0])
            torch.addmm(block, ra, rb.T, beta=0, alpha=1.0 if a == b else math.sqrt(2.0), out=block)
            if a == b and zero_diagonal:
                block.diagonal().zero_()
            at += block.numel()
    parts = flat.view(len(mats), -1, CHUNK).transpose(0, 1)  # [chunks, L, chunk]
    with _full_precision():
        return torch.bmm(parts, parts.transpose(1, 2)).double().sum(0)


def _feature_space(mats: list[torch.Tensor], pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """|XᵢᵀXⱼ|²_F for the needed pairs (i >= j). For each layer i, its partners j are taken in runs of
    consecutive layers, each run one product Xᵢᵀ [Xⱼ ... Xₖ] (a column slice of all layers side by side),
    then squared in float64 and summed per partner: O(L) products, not O(L²) small ones. Skipping the upper
    triangle of XᵢᵀXᵢ by column blocks ran slower than the full product with MKL on 2 CPU cores."""
    dims = [m.shape[1] for m in mats]
    starts = [sum(dims[:j]) for j in range(len(mats) + 1)]
    side_by_side = None
    out = torch.zeros(len(mats), len(mats), dtype=torch.float64, device=mats[0].device)
    for i, run in _runs(pairs):
        if len(run) == 1:
            block = mats[run[0]]
        else:
            side_by_side = torch.cat(mats, 1) if side_by_side is None else side_by_side
            block = side_by_side[:, starts[run[0]] : starts[run[-1] + 1]]
        squares = (mats[i].T @ block).double().square().sum(0)  # [Σ d_j]
        widths = torch.tensor([dims[j] for j in run], device=squares.device)
        owner = torch.repeat_interleave(torch.arange(len(run), device=squares.device), widths)
        sums = torch.zeros(len(run), dtype=torch.float64, device=squares.device).index_add_(0, owner, squares)
        out[i, run] = sums
        out[run, i] = sums
    return out


def _runs(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """(i, [j, j+1, ...]): the partners of each layer i, cut into runs of consecutive layers."""
    partners: dict[int, list[int]] = {}
    for i, j in pairs:
        partners.setdefault(i, []).append(j)
    runs = []
    for i, js in partners.items():
        js = sorted(js)
        cuts = [0] + [k for k in range(1, len(js)) if js[k] != js[k - 1] + 1] + [len(js)]
        runs += [(i, js[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    return runs


class _full_precision:
    """float32 matmuls at full float32 precision (no TF32) inside the block, restored after."""

    def __enter__(self) -> None:
        self.previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc) -> None:
        torch.set_float32_matmul_precision(self.previous)


def hsic_pairs(
    xs: Sequence,
    ys: Sequence | None = None,
    debiased: bool = True,
    dtype: torch.dtype = torch.float64,
    names: Sequence[str] | None = None,
    space: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HSIC of every layer pair: (xy `[Lx, Ly]`, xx `[Lx]`, yy `[Ly]`), float64. `ys=None`: xs against
    itself (xy is then `[Lx, Lx]`). `space`: force "gram" or "feature" (tests), else chosen by cost."""
    layers = list(xs) + list(ys or [])
    names = names or [f"layer {i}" for i in range(len(layers))]
    mats = centred(layers, names, dtype)
    n, lx = _rows(mats, len(xs)), len(xs)
    if debiased and n < 4:
        raise InputError(f"unbiased HSIC needs at least 4 rows per minibatch, got {n}")
    pairs = _needed_pairs(lx, len(layers) - lx)
    p, gram = inner_products(mats, pairs, zero_diagonal=debiased, space=space)
    h = _unbiased(p, mats, gram) if debiased else p / (n - 1) ** 2
    if not torch.isfinite(h).all():  # one check (one device sync) for all layers; name the layer if any
        for f, name in zip(layers, names, strict=True):
            as_float64(f, name)
        raise InputError("HSIC overflowed (features too large for the product precision)")
    diag = torch.diagonal(h)
    if ys is None:
        return h, diag, diag
    return h[:lx, lx:], diag[:lx], diag[lx:]


def _rows(mats: list[torch.Tensor], lx: int) -> int:
    """The common row count of all layers (InputError if the layers of one side, or the sides, differ)."""
    sides = [sorted({m.shape[0] for m in side}) for side in (mats[:lx], mats[lx:]) if side]
    if any(len(rows) != 1 for rows in sides):
        raise InputError(f"all layers of a minibatch need the same rows, got {sorted(set(sum(sides, [])))}")
    if len(sides) == 2 and sides[0] != sides[1]:
        raise InputError(f"X and Y minibatches differ in rows ({sides[0][0]} vs {sides[1][0]})")
    return sides[0][0]


def _needed_pairs(lx: int, ly: int) -> list[tuple[int, int]]:
    """(i, j), i >= j, of the layers [xs..., ys...]: all pairs of xs alone, else x-y pairs and self pairs."""
    if ly == 0:
        return [(i, j) for i in range(lx) for j in range(i + 1)]
    return [(lx + j, i) for i in range(lx) for j in range(ly)] + [(i, i) for i in range(lx + ly)]


def _unbiased(p: torch.Tensor, mats: list[torch.Tensor], zeroed: bool) -> torch.Tensor:
    """Song et al.'s unbiased HSIC of every pair from <K_i, K_j> (diagonals already zeroed when `zeroed`,
    i.e. in Gram space) and each layer's O(n d) terms, in float64."""
    n = mats[0].shape[0]
    kx, ones, rows = (
        torch.stack(t) for t in zip(*(_layer_terms(m, exact=zeroed) for m in mats), strict=True)
    )
    off = p if zeroed else p - kx @ kx.T  # <K̃_i, K̃_j>
    return (off + torch.outer(ones, ones) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rows @ rows.T)) / (
        n * (n - 3)
    )


def _layer_terms(m: torch.Tensor, exact: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 kx = (|x_i|²)_i, 1ᵀK̃1 = |sx|² - Σ kx and K̃1 = X sx - kx of one centred layer. In Gram space
    (n <= ~d) these terms are as large as the result, so they are computed from a float64 copy (cheap
    there); in feature space (chosen when d < ~n/3) kx·ky is ~d/n of the result and the others ~d/n², so
    the working precision suffices (and saves a float64 copy of a tall matrix)."""
    w = m.double() if exact else m
    k, s = torch.linalg.vecdot(w, w), w.sum(0)  # |x_i|², Σ x_i
    k64, s64 = k.double(), s.double()
    return k64, s64.square().sum() - k64.sum(), (w @ s).double() - k64
