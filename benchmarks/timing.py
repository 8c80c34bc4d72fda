"""Shared timing helper for the benchmark scripts (run from the repository root or benchmarks/)."""

from __future__ import annotations

import statistics
import time


def median_time(fn, reps: int, warmup: int = 3) -> float:
    """Median wall-clock seconds of `fn()` over `reps` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
