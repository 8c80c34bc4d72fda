"""Verdict rules for the paper's mechanism claims: pure functions of summary statistics, so the logic is
tested on constructed numbers.

The deciding tests (`lnprobe.claims.inference`): a difference d (LN minus reference) whose sign the claim
predicts ("lower"), an equivalence margin δ, and four outcomes: supported, refuted, no effect beyond δ,
inconclusive (with its minimum detectable effect). Over seeds: the paired test of the per-seed differences
(`paired_test`); within one run: the run's own interval (`interval_test`).

`sign_verdict(pairs, ...)` is kept as detail beside the domain claim's test: paired per-site values, a
two-sided exact sign test over the sites where the pair differs: supported when p < alpha and most sites go
the predicted way, refuted when p < alpha the other way, inconclusive otherwise (including fewer than 6
informative sites, where no outcome reaches p < 0.05).
"""

from __future__ import annotations

import math

from lnprobe.claims.inference import (
    INCONCLUSIVE,
    NO_EFFECT,
    OUTCOMES,
    REFUTED,
    SUPPORTED,
    Verdict,
    decide,
    interval_test,
    paired_test,
    welch_test,
)

__all__ = ["INCONCLUSIVE", "NO_EFFECT", "OUTCOMES", "REFUTED", "SUPPORTED", "Verdict", "decide",
           "interval_test", "paired_test", "sign_verdict", "welch_test"]  # fmt: skip


def sign_verdict(pairs: list[tuple[float, float]], predicted: str = "lower", alpha: float = 0.05) -> Verdict:
    """Paired values (tuned, reference) per site: does the tuned one go the predicted way in most sites?"""
    if predicted not in ("lower", "higher"):
        raise ValueError("predicted must be 'lower' or 'higher'")
    sign = -1 if predicted == "lower" else 1
    wins = sum(1 for a, b in pairs if (a - b) * sign > 0)
    losses = sum(1 for a, b in pairs if (a - b) * sign < 0)
    n = wins + losses
    if n == 0:
        return Verdict(INCONCLUSIVE, 0.0, None, None, "no site differs")
    p = _sign_test_p(wins, n)
    text = f"{wins} of {n} sites go the predicted way (two-sided sign test p = {p:.3g})"
    if p < alpha:
        return Verdict(
            SUPPORTED if wins > losses else REFUTED, float(wins), None, p, text, units=n, unit="sites"
        )
    return Verdict(INCONCLUSIVE, float(wins), None, p, text, units=n, unit="sites")


def _sign_test_p(k: int, n: int) -> float:
    """Two-sided exact binomial test of k successes in n at p = 1/2."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)
