"""Pooling a statistic over training seeds: with one seed, the run's own interval (input sampling only);
with k >= 2 seeds, the mean over seeds and a t interval from their spread (mean +- t(k-1) sd / sqrt k),
which covers training randomness too."""

from __future__ import annotations

import math
import statistics

# two-sided 95 % quantiles of Student's t, by degrees of freedom (1.96 beyond the table)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def t975(df: int) -> float:
    known = [d for d in T975 if d <= df]
    return T975[max(known)] if df <= 30 else 1.96


def pool(estimates: list[tuple[float, tuple[float, float] | None]]) -> dict:
    """{'value', 'ci95', 'seeds', 'interval'} from per-seed (value, 95 % interval) pairs."""
    if not estimates:
        raise ValueError("nothing to pool")
    if len(estimates) == 1:
        value, ci = estimates[0]
        return {"value": value, "ci95": list(ci) if ci else None, "seeds": 1, "interval": "within the run"}
    values = [v for v, _ in estimates]
    mean = statistics.fmean(values)
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"value": mean, "ci95": [mean - half, mean + half], "seeds": len(values),
            "interval": f"t interval over {len(values)} seeds"}  # fmt: skip
