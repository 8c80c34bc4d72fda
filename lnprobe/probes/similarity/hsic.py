"""Linear HSIC of many layer pairs at once: the one engine behind `linear_cka`, `cka_matrix` and
`MinibatchCKA.update`.

For centred features X `[n, dx]`, Y `[n, dy]` with K = X Xᵀ, L = Y Yᵀ, every estimator needs <K, L>_F, which
is computed in whichever space is cheaper for the shapes at hand (the answer is the same):

    Gram space     <K, L>_F over n x n Grams            ~ n² Σ d / 2 + n² L² / 2 multiply-adds
    feature space  <K, L>_F = |Xᵀ Y|²_F over d x d       ~ n Σ_pairs dx dy multiply-adds

Gram space computes only the lower triangle of each (symmetric) Gram, streamed in column blocks through one
small buffer (`_gram_space`). The biased HSIC is
<K, L> / (n - 1)². The unbiased HSIC (Song et al. 2012) adds O(n d) terms, from kx_i = |x_i|² and
sx = Σ x_i (K̃: K with a zeroed diagonal):

    <K̃, L̃> = <K, L> - kx·ky    (Gram space zeroes the diagonal instead: no cancellation when n << d)
    1ᵀK̃1 = |sx|² - Σ kx,   K̃1 = X sx - kx
    HSIC₁ = (<K̃, L̃> + 1ᵀK̃1 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) K̃1·L̃1) / (n (n-3))

With `dtype=torch.float64` everything is float64. With `torch.float32` features are centred in float32 in
two passes, the Gram / feature products run in float32 at torch's float32 matmul precision (TF32 where
`torch.set_float32_matmul_precision` allows it: the GPU fast path), and every sum over products is float64
(Gram space: full-float32 partial sums of 4096 terms added in float64; feature space: the d x d products
squared and summed in float64; the O(n d) terms summed in float64), so results stay within
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


def centred(
    features: Sequence[torch.Tensor], dtype: torch.dtype, joined: bool = False
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Column-centred copies of `[n, d]` matrices in `dtype`, on the first one's device (finiteness is
    checked once, on the result: a NaN or inf anywhere in a column reaches every HSIC of its layer), and
    with `joined` all of them side by side in one `[n, Σ d]` tensor, of which the copies are column views
    (feature space multiplies runs of layers at once; one buffer spares a second copy, whose fresh pages
    cost ~1/5 of an n=8192, d=768 pair on 2 CPU cores). float32 features are centred in two passes (the
    second removes the rounding of the first mean, which would dominate layers whose spread is near float32
    resolution, e.g. saturated units, and which the float32 O(n d) terms of the unbiased estimator would not
    absorb)."""
    device, n = features[0].device, features[0].shape[0]
    dims = [f.shape[1] for f in features]
    side = torch.empty(n, sum(dims), dtype=dtype, device=device) if joined else None
    mats, at = [], 0
    for f, d in zip(features, dims, strict=True):
        c = f.to(device=device, dtype=dtype)
        c = c - c.mean(0) if side is None else torch.sub(c, c.mean(0), out=side[:, at : at + d])
        mats.append(c if dtype == torch.float64 else c.sub_(c.mean(0)))
        at += d
    return mats, side


def column_sums(m: torch.Tensor, block: int = 256) -> torch.Tensor:
    """float64 column sums of `[n, d]` m: working-precision partial sums over blocks of `block` rows, added
    in float64 (torch's float64-accumulating `sum(0, dtype=float64)` of float32 ran ~20x slower on CPU)."""
    if m.dtype == torch.float64:
        return m.sum(0)
    whole = m.shape[0] // block * block
    tail = m[whole:].double().sum(0)
    return tail if not whole else m[:whole].reshape(-1, block, m.shape[1]).sum(1).double().sum(0) + tail


def use_feature_space(n: int, dims: Sequence[int], pairs: Sequence[tuple[int, int]]) -> bool:
    """Whether |XᵢᵀXⱼ|² over the needed `pairs` (i >= j) costs fewer multiply-adds than one Gram per layer
    plus the products of every Gram pair (Gram space computes only the lower block triangles)."""
    gram = n * n * (sum(dims) + len(dims) ** 2) / 2
    feature = n * sum(dims[i] * dims[j] for i, j in pairs)
    return feature < gram


def _gram_space(
    mats: list[torch.Tensor], zero_diagonal: bool, rows: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """<K_i, K_j> for every pair, streamed over column blocks of the Grams' lower triangles: for columns
    [r0, r1) each layer's Gram columns are computed from row r0 down (the diagonal block once, the rest
    scaled by sqrt 2, i.e. counted twice), into one reused buffer, and every pair's products of that
    block are added (one batched product of the flat blocks). The products cost (k + 1) / 2k of the full
    Grams with k column blocks, and memory is L x rows x n, not L x n x n (whose first touch alone cost as
    much as the products on 2 CPU cores). Also returns the Grams' diagonals, float64 `[L, n]`."""
    n, device, dtype = mats[0].shape[0], mats[0].device, mats[0].dtype
    rows = min(rows or (max(1024, n // 2) if mats[0].is_cuda else 256), n)
    buf = torch.empty(len(mats), rows * n + CHUNK, dtype=dtype, device=device)
    out = torch.zeros(len(mats), len(mats), dtype=torch.float64, device=device)
    diagonals = torch.empty(len(mats), n, dtype=dtype, device=device)
    for r0 in range(0, n, rows):
        h, w = min(rows, n - r0), n - r0
        size = -(-h * w // CHUNK) * CHUNK
        for i, m in enumerate(mats):
            _gram_rows(m, r0, buf[i, : h * w].view(w, h), diagonals[i, r0 : r0 + h], zero_diagonal)
            buf[i, h * w : size].zero_()
        parts = buf[:, :size].view(len(mats), -1, CHUNK).transpose(0, 1)  # [chunks, L, chunk]
        with _full_precision():
            out += torch.bmm(parts, parts.transpose(1, 2)).double().sum(0)
    return out, diagonals.double()


def _gram_rows(
    m: torch.Tensor, r0: int, block: torch.Tensor, diagonal: torch.Tensor, zero_diagonal: bool
) -> None:
    """Columns [r0, r0 + h) of m mᵀ from row r0 down, into `block` [n - r0, h]: the diagonal h x h block as
    is (its diagonal copied to `diagonal`, then zeroed when asked), the rows below it times sqrt 2. (This
    tall layout, two products into contiguous outputs, ran ~1.3x faster with MKL on 2 CPU cores than the
    same rows computed side-wise.)"""
    h = block.shape[1]
    cols, top = m[r0 : r0 + h].T, block[:h]
    torch.mm(m[r0 : r0 + h], cols, out=top)
    diagonal.copy_(top.diagonal())
    if zero_diagonal:
        top.diagonal().zero_()
    if block.shape[0] > h:
        torch.addmm(block[h:], m[r0 + h :], cols, beta=0, alpha=math.sqrt(2.0), out=block[h:])


def _feature_space(
    mats: list[torch.Tensor], side: torch.Tensor, pairs: Sequence[tuple[int, int]]
) -> torch.Tensor:
    """|XᵢᵀXⱼ|²_F for the needed pairs (i >= j). For each layer i, its partners j < i are taken in runs of
    consecutive layers, each run one product Xᵢᵀ [Xⱼ ... Xₖ] (a column slice of `side`, all layers side by
    side), then squared in float64 and summed per partner: O(L) products, not O(L²) small ones. The self
    pair (i, i), always last among i's partners, is `_self_square`'s symmetric product."""
    dims = [m.shape[1] for m in mats]
    starts = [sum(dims[:j]) for j in range(len(mats) + 1)]
    out = torch.zeros(len(mats), len(mats), dtype=torch.float64, device=mats[0].device)
    for i, run in _runs(pairs):
        if run[-1] == i:
            out[i, i] = _self_square(mats[i])
            run = run[:-1]
        if not run:
            continue
        block = side[:, starts[run[0]] : starts[run[-1] + 1]]
        squares = (mats[i].T @ block).double().square().sum(0)  # [Σ d_j]
        widths = torch.tensor([dims[j] for j in run], device=squares.device)
        owner = torch.repeat_interleave(torch.arange(len(run), device=squares.device), widths)
        sums = torch.zeros(len(run), dtype=torch.float64, device=squares.device).index_add_(0, owner, squares)
        out[i, run] = sums
        out[run, i] = sums
    return out


def _self_square(m: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
    """|XᵀX|²_F (float64) from the lower triangle of the symmetric XᵀX, in column blocks: block j is
    X[:, j0:]ᵀ X[:, j0:j1], whose top (j1 - j0) rows (the diagonal block) count once and the rest twice.
    k blocks cost (k + 1) / 2k of the full product; in this tall layout 4 blocks took 0.6-0.7x the full
    product's time (n=8192, d=768, MKL, 2 CPU cores). Narrow layers (d < 128) take the full product."""
    d = m.shape[1]
    k = blocks or max(1, min(4, d // 64))
    edges = [d * j // k for j in range(k + 1)]
    total = torch.zeros((), dtype=torch.float64, device=m.device)
    for j0, j1 in zip(edges, edges[1:], strict=False):
        squares = (m[:, j0:].T @ m[:, j0:j1]).double().square()  # [d - j0, j1 - j0]
        total += squares[: j1 - j0].sum() + 2.0 * squares[j1 - j0 :].sum()
    return total


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
    layers = [check_matrix(f, name) for f, name in zip(layers, names, strict=True)]
    n, lx = _rows(layers, len(xs)), len(xs)
    if debiased and n < 4:
        raise InputError(f"unbiased HSIC needs at least 4 rows per minibatch, got {n}")
    pairs = _needed_pairs(lx, len(layers) - lx)
    dims = [f.shape[1] for f in layers]
    gram = space == "gram" if space else not use_feature_space(n, dims, pairs)
    mats, side = centred(layers, dtype, joined=not gram)
    if gram:
        p, diagonals = _gram_space(mats, debiased, None)
    else:
        p, diagonals = _feature_space(mats, side, pairs), None
    h = _unbiased(p, mats, diagonals) if debiased else p / (n - 1) ** 2
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


def _unbiased(p: torch.Tensor, mats: list[torch.Tensor], diagonals: torch.Tensor | None) -> torch.Tensor:
    """Song et al.'s unbiased HSIC of every pair from <K_i, K_j> and each layer's O(n d) terms, in float64.
    In Gram space `diagonals` holds each Gram's diagonal (kx) and p's Grams had it zeroed already; in
    feature space (None) kx is computed here and p's diagonal products are removed."""
    n = mats[0].shape[0]
    kx, ones, rows = (
        torch.stack(t)
        for t in zip(
            *(_layer_terms(m, None if diagonals is None else diagonals[i]) for i, m in enumerate(mats)),
            strict=True,
        )
    )
    off = p if diagonals is not None else p - kx @ kx.T  # <K̃_i, K̃_j>
    return (off + torch.outer(ones, ones) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rows @ rows.T)) / (
        n * (n - 3)
    )


def _layer_terms(m: torch.Tensor, kx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 kx = (|x_i|²)_i, 1ᵀK̃1 = |sx|² - Σ kx and K̃1 = X sx - kx of one layer. In Gram space kx (as
    large as the result when n <= ~d) comes from the Grams' own diagonals, at the precision of their other
    entries; in feature space (d < ~n/3) kx·ky is ~d/n of the result and the others ~d/n², so the working
    precision suffices. sx, ~0 for centred X, is summed in float64: X sx carries any residual column mean."""
    k64 = torch.linalg.vecdot(m, m).double() if kx is None else kx
    s64 = column_sums(m)
    return k64, s64.square().sum() - k64.sum(), (m @ s64.to(m.dtype)).double() - k64
