"""The gradient-statistics accumulator's one-sample update (issue 30): the in-place Welford update that
`Welford.update` now uses for a single sample, against Chan et al.'s merge it used before (the same
estimator: both give the running mean and sum of squared deviations; max |difference| printed), side by
side in one run on the same samples. The size is a full-finetuning step of SmolLM2-135M recorded every
step in `make real-study` (`--p 134515008` for all of it; the default, a tenth, fits small machines).

    python benchmarks/gradvar_update.py [--p 13451500] [--samples 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lnprobe.probes.gradvar.stats import Welford  # noqa: E402


def merge_update(acc: Welford, samples: torch.Tensor) -> None:
    """The update as it was before: Chan's parallel merge, also for one sample (k = 1)."""
    x = samples.detach().to(torch.float64).reshape(-1, acc.mean.numel()).cpu()
    k = x.shape[0]
    batch_mean = x.mean(0)
    batch_m2 = (x - batch_mean).square().sum(0)
    total = acc.count + k
    delta = batch_mean - acc.mean
    acc.mean += delta * (k / total)
    acc.m2 += batch_m2 + delta.square() * (acc.count * k / total)
    acc.count = total
    acc.sq_norm_sum += float(x.square().sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", type=int, default=13_451_500)
    ap.add_argument("--samples", type=int, default=6)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(args.p, generator=gen) * 1e-3 for _ in range(args.samples)]  # float32, as gradients
    before, now = Welford(args.p), Welford(args.p)
    times = {"merge (before)": [], "in place (now)": []}
    for g in grads:  # interleaved: each sample through both
        start = time.perf_counter()
        merge_update(before, g)
        times["merge (before)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        now.update(g)
        times["in place (now)"].append(time.perf_counter() - start)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    diff = max(float((before.mean - now.mean).abs().max()), float((before.m2 - now.m2).abs().max()))
    print(
        f"p = {args.p:,}, {args.samples} samples, median of samples 2-{args.samples}, "
        f"threads {torch.get_num_threads()}"
    )
    for name, t in med.items():
        print(f"  {name:16} {t * 1000:8.1f} ms / sample")
    print(f"  speed-up {med['merge (before)'] / med['in place (now)']:.2f}x; max |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
