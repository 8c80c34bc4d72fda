"""Mutual k-nearest-neighbour alignment (Huh, Cheung, Wang & Isola 2024, "The Platonic Representation
Hypothesis", the `mutual_knn` metric of their code), written from its definition:

    rows are L2-normalised; N_X(i) = the k rows j != i of largest cosine cos(x_i, x_j) (self excluded);
    m_kNN(X, Y) = mean_i |N_X(i) ∩ N_Y(i)| / k,   in [0, 1], higher = more alike.

No centring (as in the reference), so two representations agree when the same rows are each other's
closest neighbours by angle, whatever the scale or rotation of either. It compares neighbourhood
structure, not linear geometry: a complement to CKA, whose value large-norm rows can dominate. Rows
whose pairing is broken (unrelated features) share about k / (n - 1) of their neighbours, the chance
level, which depends on the number of rows n: `chance(n, k)`.

Neighbours are found within each minibatch (n rows, n > k), so the statistic belongs to the minibatch
size; `lnprobe similarity` averages the per-minibatch matrix over minibatches like `cosine`. Ties in cosine
(duplicate or zero rows) are broken by `torch.topk`'s order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lnprobe.errors import InputError
from lnprobe.probes.similarity.tensors import as_float64, pair

K = 10  # the reference's default `topk`


def neighbours(x: torch.Tensor, k: int = K) -> torch.Tensor:
    """Indices `[n, k]` of each row's k nearest other rows by cosine (float64 `[n, d]` input)."""
    n = x.shape[0]
    if k < 1 or n <= k:
        raise InputError(f"mutual_knn with k={k} needs more than {k} rows, got {n}")
    unit = torch.nn.functional.normalize(x, dim=1, eps=1e-300)  # a zero row stays zero
    cos = unit @ unit.T  # [n, n]
    cos.fill_diagonal_(-float("inf"))  # self excluded
    return cos.topk(k, dim=1).indices


def overlap(nx: torch.Tensor, ny: torch.Tensor) -> torch.Tensor:
    """mean_i |N_X(i) ∩ N_Y(i)| / k for neighbour stacks `[Lx, n, k]` x `[Ly, n, k]` → `[Lx, Ly]`
    (float64). Each row's k indices are distinct, so the count of equal (a, b) index pairs is the size of
    the intersection; one layer of X at a time keeps memory at Ly n k² booleans."""
    _, n, k = nx.shape
    out = torch.empty(nx.shape[0], ny.shape[0], dtype=torch.float64)
    for i in range(nx.shape[0]):
        same = nx[i][None, :, :, None] == ny[:, :, None, :]  # [Ly, n, k, k]
        out[i] = same.sum((1, 2, 3)).double() / (n * k)
    return out


def mutual_knn(x, y, k: int = K) -> float:
    """Mutual k-NN alignment of `[n, dx]` and `[n, dy]` matched rows (widths may differ)."""
    a, b = pair(x, y)
    return float(overlap(neighbours(a, k)[None], neighbours(b, k)[None])[0, 0])


def mutual_knn_matrix(xs: Sequence, ys: Sequence | None = None, k: int = K) -> torch.Tensor:
    """`[Lx, Ly]` mutual k-NN alignment of every layer pair over the same n rows (`ys=None`: xs against
    itself). Each layer's neighbours are found once (one n x n cosine matrix at a time)."""
    nx = _stack(xs, k, "layer")
    ny = nx if ys is None else _stack(ys, k, "Y layer")
    if nx.shape[1] != ny.shape[1]:
        raise InputError(f"X and Y minibatches differ in rows ({nx.shape[1]} vs {ny.shape[1]})")
    return overlap(nx, ny)


def chance(n: int, k: int = K) -> float:
    """Expected mutual k-NN alignment of unrelated rows (one side's rows randomly permuted): k / (n - 1)."""
    return k / (n - 1)


def _stack(layers: Sequence, k: int, name: str) -> torch.Tensor:
    rows = {torch.as_tensor(f).shape[0] for f in layers}
    if len(rows) != 1:
        raise InputError(f"all layers of a minibatch need the same rows, got {sorted(rows)}")
    return torch.stack([neighbours(as_float64(f, f"{name} {i}"), k).cpu() for i, f in enumerate(layers)])
