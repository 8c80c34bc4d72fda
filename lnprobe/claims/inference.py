"""The tests behind every verdict: a difference d (tuned minus reference) whose sign a claim predicts, an
equivalence margin δ declared before any result, and four outcomes.

Given an estimate of d with standard error se on df degrees of freedom (df = inf: a normal interval):

- 95 % interval  d ± t₀.₉₇₅(df) se;  two-sided p of d = 0 from the same t distribution;
- *supported*: the 95 % interval lies wholly on the predicted side of 0;
- *refuted*: it lies wholly on the other side;
- *no effect beyond δ*: two one-sided tests at 5 % each (TOST; Schuirmann 1987) reject |d| ≥ δ, i.e. the
  90 % interval d ± t₀.₉₅(df) se lies inside [-δ, δ];
- *inconclusive*: none of these. Its power statement: the minimum detectable effect at 80 % power of a
  two-sided 5 % test, MDE = (t₀.₉₇₅(df) + t₀.₈(df)) se, and, when the units are seeds, the fewest seeds
  whose t test would detect δ at that power with the observed spread per seed (and the fewest that would
  detect the observed difference, were it the true one).

An effect that is significant and also inside the margin keeps its direction's outcome, flagged `trivial`.

Paired over k seeds (`paired_test`): d_s = tuned_s − reference_s per seed (same seed, same data order, same
probe inputs), pooled as mean ± t(k−1) sd/√k, and an exact sign-flip permutation p: under the null each
d_s is as likely to be −d_s, so p = #{sign vectors ε : |mean(ε d)| ≥ |mean(d)|} / 2ᵏ over all 2ᵏ vectors
(k ≤ 16; beyond, 2¹⁶ seeded random vectors). With k seeds the smallest exact p is 2/2ᵏ (0.0625 at k = 5):
it is reported beside the t test, which decides.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

from lnprobe.errors import InputError

SUPPORTED, REFUTED, NO_EFFECT, INCONCLUSIVE = "supported", "refuted", "no effect beyond δ", "inconclusive"
OUTCOMES = (SUPPORTED, REFUTED, NO_EFFECT, INCONCLUSIVE)
ALPHA, POWER = 0.05, 0.80
EXACT_FLIPS = 16  # enumerate every sign vector up to this many seeds
MAX_UNITS = 10_000  # "seeds needed" above this reads as out of reach


@dataclass(frozen=True)
class Verdict:
    verdict: str
    statistic: float | None  # the estimated difference d (or, for detail tests, what they count)
    ci95: tuple[float, float] | None
    p_value: float | None  # two-sided, d = 0
    reason: str
    delta: float | None = None  # the equivalence margin
    ci90: tuple[float, float] | None = None  # the TOST interval
    p_equivalence: float | None = None  # TOST: the larger of the two one-sided p
    p_permutation: float | None = None  # exact sign flip over seeds
    units: int | None = None  # how many units (seeds, sites) the spread came from
    unit: str | None = None  # "seeds", "sites" or "within the run"
    se: float | None = None
    mde: float | None = None  # minimum detectable effect at 80 % power
    units_for_delta: int | None = None  # seeds that would detect δ (units = seeds)
    units_for_estimate: int | None = None  # seeds that would detect the observed difference (units = seeds)
    trivial: bool = False  # significant, but inside the margin

    def as_dict(self) -> dict:
        """The fields, JSON-ready: tuples as lists, a non-finite number as None."""
        return {k: _finite(v) for k, v in asdict(self).items()}


def t_quantile(q: float, df: float) -> float:
    return float(stats.norm.ppf(q) if math.isinf(df) else stats.t.ppf(q, df))


def decide(
    estimate: float,
    se: float,
    df: float,
    predicted: str,
    delta: float,
    units: int,
    unit: str,
    sd_unit: float | None = None,
) -> Verdict:
    """The four-outcome verdict on d = `estimate` ± `se` (see the module's docstring); `sd_unit` (the spread
    of one unit, seeds) gives the seeds that would detect δ."""
    if predicted not in ("lower", "higher"):
        raise ValueError("predicted must be 'lower' or 'higher'")
    estimate, se, delta = float(estimate), float(se), float(delta)  # numpy scalars would reach the JSON
    if not (math.isfinite(estimate) and math.isfinite(se)):
        return Verdict(INCONCLUSIVE, estimate, None, None, "the difference or its spread is not finite",
                       delta=delta, units=units, unit=unit)  # fmt: skip
    t95, t90 = t_quantile(1 - ALPHA / 2, df), t_quantile(1 - ALPHA, df)
    ci95 = (estimate - t95 * se, estimate + t95 * se)
    ci90 = (estimate - t90 * se, estimate + t90 * se)
    p = _p_two_sided(estimate, se, df)
    p_eq = _p_equivalence(estimate, se, df, delta)
    inside = -delta < ci90[0] and ci90[1] < delta
    mde = (t95 + t_quantile(POWER, df)) * se
    by_seeds = unit == "seeds" and sd_unit is not None
    needed = seeds_for(delta, sd_unit) if by_seeds else None
    observed = seeds_for(abs(estimate), sd_unit) if by_seeds else None
    common = dict(delta=delta, ci90=ci90, p_equivalence=p_eq, units=units, unit=unit, se=se, mde=mde,
                  units_for_delta=needed, units_for_estimate=observed)  # fmt: skip
    lower = predicted == "lower"
    if (ci95[1] < 0) if lower else (ci95[0] > 0):
        return Verdict(SUPPORTED, estimate, ci95, p, f"the 95 % interval lies {predicted} than 0"
                       + (f", but inside ±δ = {delta:.3g} (a trivial effect)" if inside else ""),
                       trivial=inside, **common)  # fmt: skip
    if (ci95[0] > 0) if lower else (ci95[1] < 0):
        return Verdict(REFUTED, estimate, ci95, p, "the 95 % interval lies on the other side of 0"
                       + (f", but inside ±δ = {delta:.3g} (a trivial effect)" if inside else ""),
                       trivial=inside, **common)  # fmt: skip
    if inside:
        return Verdict(NO_EFFECT, estimate, ci95, p, f"the 90 % interval lies inside ±δ = {delta:.3g} (TOST)",
                       **common)  # fmt: skip
    text = f"the 95 % interval contains 0 and the 90 % one leaves ±δ = {delta:.3g}; detectable at 80 % "
    text += f"power: |d| ≥ {mde:.3g}"
    if needed is not None:
        text += f"; δ would need {needed} seeds" if needed <= MAX_UNITS else "; δ is out of reach in seeds"
    return Verdict(INCONCLUSIVE, estimate, ci95, p, text, **common)


def seeds_for(delta: float, sd: float) -> int | None:
    """The fewest seeds k >= 2 whose paired t test detects a difference δ with 80 % power (5 % two-sided)
    at a per-seed spread `sd`: (t₀.₉₇₅(k−1) + t₀.₈(k−1)) sd / √k ≤ δ; MAX_UNITS + 1 when none is."""
    if delta <= 0:
        return None
    if sd == 0:
        return 2
    k, factor = _power_factors()
    hits = np.flatnonzero(factor * sd <= delta)  # decreasing in k: the first hit is the fewest seeds
    return int(k[hits[0]]) if hits.size else MAX_UNITS + 1


@functools.cache
def _power_factors() -> tuple[np.ndarray, np.ndarray]:
    """k = 2..MAX_UNITS and (t₀.₉₇₅(k−1) + t₀.₈(k−1)) / √k, computed once."""
    k = np.arange(2, MAX_UNITS + 1)
    return k, (stats.t.ppf(1 - ALPHA / 2, k - 1) + stats.t.ppf(POWER, k - 1)) / np.sqrt(k)


def paired_test(diffs: list[float], predicted: str, delta: float, unit: str = "seeds") -> Verdict:
    """The pooled test of per-seed (or per-cluster) differences: mean, t interval, exact sign-flip p."""
    k = len(diffs)
    if k < 2:
        raise InputError(f"a pooled test needs at least 2 seeds, got {k}")
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    verdict = decide(mean, sd / math.sqrt(k), k - 1, predicted, delta, k, unit, sd_unit=sd)
    return _with(verdict, p_permutation=sign_flip_p(diffs))


def interval_test(
    estimate: float, ci95: tuple[float, float] | None, predicted: str, delta: float, units: int = 1
) -> Verdict:
    """One run's difference with a normal 95 % interval (se = half-width / 1.96)."""
    if ci95 is None or None in ci95 or not all(map(math.isfinite, ci95)):
        return Verdict(INCONCLUSIVE, estimate, None, None, "no interval for the difference", delta=delta,
                       units=units, unit="within the run")  # fmt: skip
    se = (ci95[1] - ci95[0]) / 2 / t_quantile(1 - ALPHA / 2, math.inf)
    return decide(estimate, se, math.inf, predicted, delta, units, "within the run")


def welch_test(a: list[float], b: list[float], predicted: str, delta: float) -> Verdict:
    """Unpaired seeds (mean a − mean b, Welch's se and degrees of freedom): both sides need >= 2."""
    if min(len(a), len(b)) < 2:
        raise InputError(
            f"an unpaired pooled test needs at least 2 seeds per side, got {len(a)} and {len(b)}"
        )
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else math.inf
    diff = statistics.fmean(a) - statistics.fmean(b)
    return decide(diff, se, df, predicted, delta, len(a) + len(b), "seeds (unpaired)")


def sign_flip_p(diffs: list[float], draws: int = 2**16, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p of mean(d) = 0: exact over all 2ᵏ sign vectors for k ≤ 16, else
    over `draws` seeded random ones (the observed vector counted among them)."""
    d = torch.tensor(diffs, dtype=torch.float64)
    k = d.numel()
    if k <= EXACT_FLIPS:
        signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=k)), dtype=torch.float64)
    else:
        gen = torch.Generator().manual_seed(seed)
        signs = torch.randint(0, 2, (draws, k), generator=gen).double() * 2 - 1
        signs = torch.cat([torch.ones(1, k, dtype=torch.float64), signs])
    observed = abs(float(d.mean()))
    means = (signs @ d).abs() / k
    return float((means >= observed * (1 - 1e-12)).double().mean())


def _p_two_sided(estimate: float, se: float, df: float) -> float:
    if se == 0:
        return 0.0 if estimate != 0 else 1.0
    z = abs(estimate) / se
    return float(2 * (stats.norm.sf(z) if math.isinf(df) else stats.t.sf(z, df)))


def _p_equivalence(estimate: float, se: float, df: float, delta: float) -> float:
    """TOST: max of the one-sided p of d ≤ −δ and of d ≥ δ."""
    if se == 0:
        return 0.0 if abs(estimate) < delta else 1.0
    sf = (lambda x: stats.norm.sf(x)) if math.isinf(df) else (lambda x: stats.t.sf(x, df))
    return float(max(sf((estimate + delta) / se), sf((delta - estimate) / se)))


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [_finite(v) for v in value]
    return value


def _with(verdict: Verdict, **changes) -> Verdict:
    return Verdict(**{**asdict(verdict), **changes})
