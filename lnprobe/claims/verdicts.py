"""Verdict rules for the paper's mechanism claims: pure functions of summary statistics, so the logic is
tested on constructed numbers.

Each rule compares the LN-tuned model against a reference (the fully-finetuned model, or the base) on a
statistic where the claim predicts a direction ("lower"):

- `interval_verdict(a, b, ...)`: two estimates with 95 % intervals. The difference a - b gets a normal-
  approximation interval from the two half-widths (independent errors: se = half-width / 1.96). Supported
  when the whole interval lies on the predicted side of 0, not supported when it lies wholly on the other
  side, inconclusive when it contains 0 (or an interval is missing).
- `sign_verdict(pairs, ...)`: paired per-layer values without intervals. A two-sided exact sign test over the
  layers where the pair differs: supported when p < alpha and most layers go the predicted way, not
  supported when p < alpha the other way, inconclusive otherwise (including fewer than 6 informative
  layers, where no outcome reaches p < 0.05).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    statistic: float | None  # the difference (or count) the verdict is about
    ci95: tuple[float, float] | None
    p_value: float | None
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def interval_verdict(
    a: float,
    a_ci: tuple[float, float] | None,
    b: float,
    b_ci: tuple[float, float] | None,
    predicted: str = "lower",
) -> Verdict:
    """Is a lower (or higher) than b, given their 95 % intervals?"""
    if predicted not in ("lower", "higher"):
        raise ValueError("predicted must be 'lower' or 'higher'")
    diff = a - b
    if a_ci is None or b_ci is None or None in (*a_ci, *b_ci):
        return Verdict(INCONCLUSIVE, diff, None, None, "no interval for one of the estimates")
    half = math.hypot((a_ci[1] - a_ci[0]) / 2, (b_ci[1] - b_ci[0]) / 2)
    lo, hi = diff - half, diff + half
    se = half / 1.96
    p = 2 * (1 - _phi(abs(diff) / se)) if se > 0 else (0.0 if diff != 0 else 1.0)
    want_below = predicted == "lower"
    if (hi < 0) if want_below else (lo > 0):
        return Verdict(SUPPORTED, diff, (lo, hi), p, f"the difference's interval lies {predicted} than 0")
    if (lo > 0) if want_below else (hi < 0):
        return Verdict(
            NOT_SUPPORTED, diff, (lo, hi), p, "the difference's interval lies on the other side of 0"
        )
    return Verdict(INCONCLUSIVE, diff, (lo, hi), p, "the difference's interval contains 0")


def sign_verdict(pairs: list[tuple[float, float]], predicted: str = "lower", alpha: float = 0.05) -> Verdict:
    """Paired values (tuned, reference) per layer: does the tuned one go the predicted way in most layers?"""
    if predicted not in ("lower", "higher"):
        raise ValueError("predicted must be 'lower' or 'higher'")
    sign = -1 if predicted == "lower" else 1
    wins = sum(1 for a, b in pairs if (a - b) * sign > 0)
    losses = sum(1 for a, b in pairs if (a - b) * sign < 0)
    n = wins + losses
    if n == 0:
        return Verdict(INCONCLUSIVE, 0.0, None, None, "no layer differs")
    p = _sign_test_p(wins, n)
    text = f"{wins} of {n} layers go the predicted way (two-sided sign test p = {p:.3g})"
    if p < alpha:
        return Verdict(SUPPORTED if wins > losses else NOT_SUPPORTED, float(wins), None, p, text)
    return Verdict(INCONCLUSIVE, float(wins), None, p, text)


def _sign_test_p(k: int, n: int) -> float:
    """Two-sided exact binomial test of k successes in n at p = 1/2."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))
