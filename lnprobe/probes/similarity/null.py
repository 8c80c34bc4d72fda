"""A permutation null for layer x layer linear CKA: what the same statistic gives once the pairing of rows
is broken (cf. Gröger et al. 2026 on calibrated similarity: part of a cross-layer CKA trend is what any two
layers of those shapes would score).

In each minibatch b, the rows of the Y side (every Y layer with the same permutation; with one checkpoint Y
is X itself) are shuffled `permutations` times (P, seeded) and the HSIC of every pair is recomputed:
xy_null[b, p]. HSIC(K, K) and HSIC(L, L) do not change under a permutation. A null replicate of the whole
statistic takes one of the P permuted terms in every minibatch,

    CKA⁰_ij = mean_b xy_null[b, p_b]_ij / sqrt( mean_b HSIC(K_i^b, K_i^b) · mean_b HSIC(L_j^b, L_j^b) )

Because the permutations are independent across minibatches, every choice (p_1 ... p_B) is a draw from the
null distribution of the statistic as `MinibatchCKA` computes it: all P^B of them when that is at most
`draws`, else `draws` random ones. The null mean is exact (the mean over all P^B), the 95th percentile
and the p value come from the replicates. The unbiased estimator's null is centred at 0; the biased one's
near d/(n + d).

The permuted HSIC comes from the minibatch's Gram matrices, computed once (from features centred in float64):
permuting Y's rows permutes the rows and columns of its Grams (P L Pᵀ), whose zeroed (unbiased) or centred
(biased) form permutes the same way, and the row sums K̃1 and 1ᵀK̃1 only permute or stay, so each
permutation costs one gather of Y's Grams and Lx·Ly·n² multiply-adds, not a new Gram. Grams and their
products run in float32 (the gather, which dominated the cost, moves half the bytes) with float64 sums
over chunks of 4096 terms, as the HSIC engine's float32 path does, and the row terms K̃1, 1ᵀK̃1 come from
the features in float64: ~1e-7 of HSIC(K, K), far below any null's spread. When the Grams of a minibatch
would exceed `GRAM_BYTES`, each permutation goes through the streaming HSIC engine on permuted rows
instead (the same numbers to that precision, tested).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

from lnprobe.errors import InputError
from lnprobe.probes.similarity.hsic import CHUNK, _full_precision, _layer_terms, hsic_pairs
from lnprobe.probes.similarity.stats import _centre_gram
from lnprobe.probes.similarity.tensors import as_float64, center

GRAM_BYTES = 1 << 30  # float32 Grams of both sides and a permuted copy held at once, at most


class PermutationNull:
    """Streaming permutation null of layer x layer linear CKA (unbiased HSIC by default). `update(xs, ys)`
    as `MinibatchCKA.update`; `replicates(draws, seed)` → `[R, Lx, Ly]` null CKA matrices; `summary(...)`
    the numbers `lnprobe similarity` writes."""

    def __init__(self, permutations: int = 4, debiased: bool = True, seed: int = 0) -> None:
        if permutations < 1:
            raise InputError(f"permutations must be >= 1, got {permutations}")
        self.permutations, self.debiased = permutations, debiased
        self.generator = torch.Generator().manual_seed(seed)
        self.terms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # per minibatch: xy[P], xx, yy

    def update(self, xs: Sequence, ys: Sequence | None = None) -> None:
        """Add one minibatch: P permutations of the rows of ys (of xs when ys is None)."""
        n = torch.as_tensor(xs[0]).shape[0]
        if self.debiased and n < 4:
            raise InputError(f"unbiased HSIC needs at least 4 rows per minibatch, got {n}")
        perms = [torch.randperm(n, generator=self.generator) for _ in range(self.permutations)]
        layers = len(xs) + (0 if ys is None else len(ys))
        if layers * n * n * 4 * 2 <= GRAM_BYTES:  # float32 Grams and one permuted copy
            self.terms.append(self._from_grams(xs, ys, perms))
        else:
            self.terms.append(self._from_rows(xs, ys, perms))

    def _from_grams(self, xs, ys, perms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kx, rx = self._grams(xs, "layer")  # float32 [Lx, n, n], float64 K̃1 [Lx, n]
        ky, ry = (kx, rx) if ys is None else self._grams(ys, "Y layer")
        n = kx.shape[-1]
        if n != ky.shape[-1]:
            raise InputError(f"X and Y minibatches differ in rows ({n} vs {ky.shape[-1]})")
        fx, fy = kx.flatten(1), ky.flatten(1)
        sx, sy = rx.sum(1), ry.sum(1)  # 1ᵀK̃1
        xx = self._hsic(_dots(fx, fx).diagonal(), sx * sx, (rx * rx).sum(1), n)
        yy = xx if ys is None else self._hsic(_dots(fy, fy).diagonal(), sy * sy, (ry * ry).sum(1), n)
        ones, xy = torch.outer(sx, sy), []
        for p in perms:
            flat = (p[:, None] * n + p[None, :]).flatten().to(fy.device)  # P K̃y Pᵀ, flattened
            dots = _dots(fx, fy.index_select(1, flat))
            xy.append(self._hsic(dots, ones, rx @ ry[:, p.to(ry.device)].T, n))
        return torch.stack(xy).cpu(), xx.cpu(), yy.cpu()

    def _grams(self, layers: Sequence, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 Grams of the float64-centred layers `[L, n, n]`, diagonal zeroed (unbiased) or doubly
        centred (biased), and the float64 row sums K̃1 `[L, n]` from the features (`..hsic`)."""
        mats = [center(as_float64(f, f"{name} {i}")) for i, f in enumerate(layers)]
        if len({m.shape[0] for m in mats}) != 1:
            raise InputError(
                f"all layers of a minibatch need the same rows, got {sorted({m.shape[0] for m in mats})}"
            )
        n = mats[0].shape[0]
        out = torch.empty(len(mats), n, n, dtype=torch.float32, device=mats[0].device)
        with _full_precision():
            for i, m in enumerate(mats):
                m32 = m.float()
                torch.mm(m32, m32.T, out=out[i])
        if not self.debiased:
            return _centre_gram(out), torch.zeros(len(mats), n, dtype=torch.float64, device=out.device)
        out.diagonal(dim1=1, dim2=2).zero_()
        return out, torch.stack([_layer_terms(m, None)[2] for m in mats])

    def _hsic(self, dot, ones, rows, n: int) -> torch.Tensor:
        """HSIC from <K̃x, K̃y>, (1ᵀK̃x1)(1ᵀK̃y1) and (K̃x1)·(K̃y1) (Song et al.; `..hsic`); biased: the
        doubly centred Grams' product / (n - 1)²."""
        if not self.debiased:
            return dot / (n - 1) ** 2
        return (dot + ones / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rows) / (n * (n - 3))

    def _from_rows(self, xs, ys, perms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        side = xs if ys is None else ys
        xy, xx, yy = [], None, None
        for p in perms:
            h, xx, yy = hsic_pairs(xs, [torch.as_tensor(y)[p] for y in side], self.debiased)
            xy.append(h)
        return torch.stack(xy).cpu(), xx.cpu(), yy.cpu()

    def _denominator(self) -> torch.Tensor:
        xx = torch.stack([t[1] for t in self.terms]).mean(0)
        yy = torch.stack([t[2] for t in self.terms]).mean(0)
        denom = torch.sqrt(torch.outer(xx, yy).clamp_min(0))
        if (denom <= 0).any():
            raise InputError("CKA is undefined for a layer with constant features in every minibatch")
        return denom

    def mean(self) -> torch.Tensor:
        """The exact null mean `[Lx, Ly]` (every permuted term of every minibatch weighs the same)."""
        if not self.terms:
            raise InputError("no minibatches were added")
        return torch.stack([t[0].mean(0) for t in self.terms]).mean(0) / self._denominator()

    def replicates(self, draws: int = 200, seed: int = 0) -> torch.Tensor:
        """`[R, Lx, Ly]` null CKA matrices: all P^B choices of one permuted term per minibatch when there
        are at most `draws`, else `draws` random choices (seeded)."""
        if not self.terms:
            raise InputError("no minibatches were added")
        b, p = len(self.terms), self.permutations
        if p**b <= draws:
            choice = torch.tensor(list(itertools.product(range(p), repeat=b)))  # [P^B, B]
        else:
            choice = torch.randint(p, (draws, b), generator=torch.Generator().manual_seed(seed))
        xy = torch.stack([t[0] for t in self.terms])  # [B, P, Lx, Ly]
        picked = xy[torch.arange(b), choice]  # [R, B, Lx, Ly]
        return picked.mean(1) / self._denominator()

    def summary(
        self,
        matrix: torch.Tensor,
        statistic: Callable[[torch.Tensor], torch.Tensor] | None = None,
        name: str = "cross_layer_mean",
        interval: Sequence[float | None] = (None, None),
        pairs: torch.Tensor | None = None,
        draws: int = 200,
        seed: int = 0,
    ) -> dict:
        """What `lnprobe similarity` writes beside the statistic: per pair the null `mean` and `p95`; for the
        summary `statistic` (e.g. the off-diagonal mean) of the observed `matrix`: its null mean, 95th
        percentile and permutation p value, and the calibrated summaries `excess` (observed minus null
        mean, with the observed `interval` shifted by the same amount) and `pairs_above_p95` (the share of
        the boolean mask `pairs`, e.g. the off-diagonal cells, whose value exceeds their own null 95th
        percentile)."""
        reps = self.replicates(draws, seed)
        mean, p95 = self.mean(), torch.quantile(reps, 0.95, dim=0)
        out: dict = {
            "permutations": self.permutations,
            "replicates": reps.shape[0],
            "mean": mean.tolist(),
            "p95": p95.tolist(),
        }
        mask = torch.ones_like(matrix, dtype=torch.bool) if pairs is None else pairs
        out["pairs_above_p95"] = float((matrix > p95)[mask].double().mean())
        if statistic is not None:
            values = torch.stack([statistic(r).reshape(()) for r in reps])
            observed, centre = float(statistic(matrix)), float(statistic(mean))
            out[name] = {
                "mean": centre,
                "p95": float(torch.quantile(values, 0.95)),
                "p": (1 + int((values >= observed).sum())) / (1 + len(values)),
            }
            lo, hi = interval
            shifted = [None if v is None else v - centre for v in (lo, hi)]
            out["excess"] = {"value": observed - centre, "ci95": shifted}
        return out


def _dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ bᵀ, float64 `[La, Lb]`, for float32 `[La, m]`, `[Lb, m]`: float32 products over chunks of
    `CHUNK` columns (at full float32 precision), the chunks added in float64, as the HSIC engine does."""
    whole = a.shape[1] // CHUNK * CHUNK
    out = a[:, whole:].double() @ b[:, whole:].double().T
    if whole:
        pa = a[:, :whole].view(a.shape[0], -1, CHUNK).transpose(0, 1)  # [chunks, La, CHUNK]
        pb = b[:, :whole].view(b.shape[0], -1, CHUNK).transpose(0, 1)
        with _full_precision():
            out += torch.bmm(pa, pb.transpose(1, 2)).double().sum(0)
    return out
