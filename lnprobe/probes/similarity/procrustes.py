"""Procrustes shape similarity: the angular Procrustes distance of Williams, Kunz, Kornblith & Linderman
(2021, "Generalized shape metrics on neural representations"; netrep's `LinearMetric(alpha=1,
center_columns=True)` with its angular `score`), written from its definition.

For column-centred X `[n, dx]`, Y `[n, dy]` (the narrower zero-padded, which changes nothing below), the
best rotation Q aligning X to Y maximises <XQ, Y>_F, and that maximum is the nuclear norm (sum of
singular values) of XᵀY. The angle between the aligned representations is

    θ(X, Y) = arccos( ‖XᵀY‖_* / (‖X‖_F ‖Y‖_F) )      in [0, π/2]: a metric on shapes (netrep's score)
    procrustes(X, Y) = cos θ = ‖XᵀY‖_* / (‖X‖_F ‖Y‖_F)      in [0, 1], higher = more alike

`lnprobe similarity -m procrustes` reports the similarity form (so that, like CKA, higher = more alike; the
distance is arccos of it). It is invariant to rotations and reflections of either side, to isotropic
scaling and to translation, but not to other invertible linear maps (unlike CCA). Like the biased CKA it is
positive for unrelated features, more so when n is small against the widths. Over a dataset it is
computed per minibatch and the per-minibatch matrices are averaged (bootstrap over minibatches).

Computation: the singular values of XᵀY depend only on the Gram matrices (their squares are the
eigenvalues of L K, K = X Xᵀ, L = Y Yᵀ), so each layer is replaced by a factor F with min(n, d) columns and
the same Gram F Fᵀ = X Xᵀ: X itself when d <= n, else U S from X Xᵀ = U S² Uᵀ. The nuclear norm is
Σ sqrt(λ) over the eigenvalues λ of the smaller of MᵀM and MMᵀ (M = F_xᵀF_y; `eigvalsh` ran 1.3-1.6x
faster than `svdvals` on one thread, and the error it adds is about 1e-8 σ_max per near-zero singular
value), one pair at a time, on one CPU thread up to 1024 x 1024 (`_one_thread`), all in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lnprobe.errors import InputError
from lnprobe.probes.similarity.tensors import as_float64, center, pair

ONE_THREAD_UP_TO = 1024  # eigen-decompositions up to this size run on one CPU thread (`_one_thread`)


def factor(x: torch.Tensor) -> torch.Tensor:
    """`[n, min(n, d)]` float64 factor F of centred `x` with F Fᵀ = X Xᵀ (see above)."""
    c = center(x)
    n, d = c.shape
    if d <= n:
        return c
    w, u = torch.linalg.eigh(c @ c.T)  # [n], [n, n]
    return u * w.clamp_min(0).sqrt()


def nuclear_norm(m: torch.Tensor) -> torch.Tensor:
    """Σ singular values of one `[a, b]` matrix, as Σ sqrt(λ) over the eigenvalues of the smaller of MᵀM
    and MMᵀ."""
    g = m.T @ m if m.shape[1] <= m.shape[0] else m @ m.T
    with _one_thread(g.shape[0] <= ONE_THREAD_UP_TO and not g.is_cuda):
        return torch.linalg.eigvalsh(g).clamp_min(0).sqrt().sum()


class _one_thread:
    """torch on one CPU thread inside the block (when `on`), restored after. Measured on 2 CPU cores that
    other processes kept busy (load 4-5), twelve 384 x 384 float64 decompositions took 0.2-0.3 s on one
    thread and 0.6-57 s on two (`eigvalsh` and `svdvals` alike; batched `eigvalsh` 18 s): small LAPACK
    calls gain little from a second thread and lose everything when its cores are contended."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        self.previous = torch.get_num_threads()
        if self.on:
            torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.previous)


def procrustes_similarity(x, y) -> float:
    """cos θ = ‖XᵀY‖_* / (‖X‖_F ‖Y‖_F) after centring, of `[n, dx]` and `[n, dy]` matched rows."""
    a, b = pair(x, y)
    return float(procrustes_matrix([a], [b])[0, 0])


def procrustes_distance(x, y) -> float:
    """The angular Procrustes distance θ = arccos(procrustes_similarity), in radians (netrep's score)."""
    return math.acos(min(1.0, procrustes_similarity(x, y)))


def procrustes_matrix(xs: Sequence, ys: Sequence | None = None) -> torch.Tensor:
    """`[Lx, Ly]` Procrustes similarity of every layer pair over the same n rows (`ys=None`: xs against
    itself, whose diagonal is 1 by definition and whose pairs are computed once)."""
    fx = _factors(xs, "layer")
    fy = fx if ys is None else _factors(ys, "Y layer")
    if fx[0].shape[0] != fy[0].shape[0]:
        raise InputError(f"X and Y minibatches differ in rows ({fx[0].shape[0]} vs {fy[0].shape[0]})")
    norms_x = torch.stack([f.square().sum().sqrt() for f in fx])
    norms_y = norms_x if ys is None else torch.stack([f.square().sum().sqrt() for f in fy])
    if (norms_x <= 0).any() or (norms_y <= 0).any():
        raise InputError("procrustes is undefined for a layer with constant features (zero variance)")
    out = torch.eye(len(fx), len(fy), dtype=torch.float64)  # the self diagonal; every other cell is set
    for i, f in enumerate(fx):
        for j in range(i) if ys is None else range(len(fy)):
            out[i, j] = float(nuclear_norm(f.T @ fy[j]) / (norms_x[i] * norms_y[j]))
        if ys is None:
            out[:i, i] = out[i, :i].clone()
    return out.clamp(0.0, 1.0)


def _factors(layers: Sequence, name: str) -> list[torch.Tensor]:
    mats = [as_float64(f, f"{name} {i}") for i, f in enumerate(layers)]
    rows = {m.shape[0] for m in mats}
    if len(rows) != 1:
        raise InputError(f"all layers of a minibatch need the same rows, got {sorted(rows)}")
    if rows.pop() < 2:
        raise InputError("procrustes needs at least 2 rows per minibatch")
    return [factor(m) for m in mats]
