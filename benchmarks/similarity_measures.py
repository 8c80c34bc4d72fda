"""The similarity measures beside CKA (issue 29, item 5), side by side in one run on the same inputs:
13 layers x n=2048 rows x d=384, random data with structure (every layer a mix of one shared latent
and its own noise, drifting with depth, plus a common offset and a few large-variance units).

Each time is the median of `--reps` calls after one warm-up, of what `lnprobe similarity` runs per
minibatch, all layer pairs of one checkpoint against itself, in float64 except the null's products:

    cka          the `cka` accumulator's update (linear CKA, unbiased HSIC; Gram or feature space by cost)
    null (P=4)   the permutation null of cka (4 row permutations of float32 Grams, float64 sums)
    mutual_knn   the `mutual_knn` accumulator's update (k=10)
    procrustes   the `procrustes` accumulator's update

and, with `--naive`, the straightforward forms they replace (the same numbers: max |difference| in the
units of the measure, CKA units for the null): mutual k-NN pair by pair (each pair recomputing both
layers' neighbours, as a per-pair function does), Procrustes pair by pair with `svdvals` of XᵢᵀXⱼ, and
the null recomputing the HSIC engine on permuted rows. Ratios are to cka.

    python benchmarks/similarity_measures.py [--reps 3] [--naive]
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/similarity_measures.py ...   (one thread)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lnprobe.probes.similarity.hsic import hsic_pairs  # noqa: E402
from lnprobe.probes.similarity.knn import mutual_knn  # noqa: E402
from lnprobe.probes.similarity.metrics import METRICS  # noqa: E402
from lnprobe.probes.similarity.null import PermutationNull  # noqa: E402
from lnprobe.probes.similarity.tensors import center  # noqa: E402

LAYERS, N, D = 13, 2048, 384


def structured(layers: int = LAYERS, n: int = N, d: int = D, seed: int = 0) -> list[torch.Tensor]:
    """float32 layers: a shared 32-dim latent mixed in with weight falling with depth, own noise, an offset
    and 4 units of large variance (what real residual streams look like, roughly)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 32, generator=g)
    out = []
    for layer in range(layers):
        w = 1.0 - layer / (2 * layers)
        x = w * z @ torch.randn(32, d, generator=g) + (1 - w) * 4 * torch.randn(n, d, generator=g)
        x[:, :4] *= 20.0
        out.append(x + 3.0)
    return out


def accumulate(metric: str, xs):
    acc = METRICS.get(metric).accumulator()
    acc.update(xs)
    return acc.compute()


def null_fast(xs, permutations: int = 4):
    """The permuted HSIC terms of one minibatch, in CKA units `[P, L, L]`."""
    null = PermutationNull(permutations, seed=0)
    null.update(xs)
    xy, xx, yy = null.terms[0]
    return xy / torch.sqrt(torch.outer(xx, yy))


def null_naive(xs, permutations: int = 4):
    """Each permutation through the HSIC engine on permuted rows (new Grams every time)."""
    gen = torch.Generator().manual_seed(0)
    perms = [torch.randperm(xs[0].shape[0], generator=gen) for _ in range(permutations)]
    out = []
    for p in perms:
        xy, xx, yy = hsic_pairs(xs, [x[p] for x in xs])
        out.append(xy / torch.sqrt(torch.outer(xx, yy)))
    return torch.stack(out)


def knn_naive(xs):
    m = torch.eye(len(xs), dtype=torch.float64)
    for i in range(len(xs)):
        for j in range(i):
            m[i, j] = m[j, i] = mutual_knn(xs[i], xs[j])
    return m


def procrustes_naive(xs):
    c = [center(x.double()) for x in xs]
    m = torch.eye(len(xs), dtype=torch.float64)
    for i in range(len(xs)):
        for j in range(i):
            nuc = torch.linalg.svdvals(c[i].T @ c[j]).sum()
            m[i, j] = m[j, i] = nuc / (c[i].norm() * c[j].norm())
    return m


def timed(fn, reps: int, warmup: int) -> tuple[torch.Tensor, float]:
    """(last result, median seconds of `reps` calls after `warmup` calls)."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--naive", action="store_true", help="also time the naive forms (no warm-up)")
    args = parser.parse_args()
    xs = structured()
    print(
        f"{LAYERS} layers x n={N} x d={D}, float32 input, float64 maths; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; median of {args.reps}"
    )
    cases = {
        "cka": lambda: accumulate("cka", xs),
        "null (P=4)": lambda: null_fast(xs),
        "mutual_knn": lambda: accumulate("mutual_knn", xs),
        "procrustes": lambda: accumulate("procrustes", xs),
    }
    naive = {
        "null (P=4)": lambda: null_naive(xs),
        "mutual_knn": lambda: knn_naive(xs),
        "procrustes": lambda: procrustes_naive(xs),
    }
    results = {name: timed(fn, args.reps, warmup=1) for name, fn in cases.items()}
    head = f"{'measure':<12} {'time s':>8} {'x cka':>7}"
    print(head + ("   naive s  speed-up  max |diff|" if args.naive else ""))
    cka_time = results["cka"][1]
    for name, (value, t) in results.items():
        line = f"{name:<12} {t:8.3f} {t / cka_time:7.2f}"
        if args.naive and name in naive:
            slow, t_naive = timed(naive[name], args.reps, warmup=0)
            diff = float((value.double() - slow.double()).abs().max())
            line += f"   {t_naive:7.3f}  {t_naive / t:7.1f}x  {diff:.1e}"
        print(line)
    off = ~torch.eye(LAYERS, dtype=torch.bool)
    means = {k: float(results[k][0][off].mean()) for k in ("cka", "mutual_knn", "procrustes")}
    print("cross-layer means: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
