"""From per-model numbers to a claim's deciding test: LN against its reference, seed by seed.

`compare` takes one estimate (value, within-run standard error) per LN seed and per reference seed:
- one seed per side: the difference with its within-run interval (errors added in quadrature);
- paired seeds (`lnprobe.claims.pairing`): the pooled paired test of the per-seed differences, each seed's
  own within-run verdict kept as detail;
- unpaired seeds: Welch's comparison of the two sides' means (a side with one seed contributes its mean
  and its within-run error).

`domain_test` is the domain claim's: per LN seed, the log ratio log(gap_tuned / gap_base) at every decoder
norm's output; the seed's effect is their mean (clustered by seed: sites of one seed are not independent,
seeds are). Over k >= 2 seeds the test is the paired test of the k seed means; with one seed, a t interval
over the sites (which treats them as independent: said in the caveats). Per site, the mean log ratio over
seeds with its t interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from lnprobe.claims.inference import Verdict, decide, paired_test, t_quantile, welch_test
from lnprobe.claims.pairing import Pairing


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float | None  # within the run (sampling of inputs / gradient samples); None: no interval

    @classmethod
    def from_ci(cls, value: float, ci, log: bool = False) -> Estimate:
        """From a 95 % interval (normal; `log`: an interval of a positive quantity, symmetric in logs)."""
        if not ci or None in ci or (log and min(ci) <= 0):
            return cls(value, None)
        lo, hi = (math.log(ci[0]), math.log(ci[1])) if log else ci
        return cls(value, (hi - lo) / 2 / t_quantile(0.975, math.inf))


def compare(
    ln: dict[str, Estimate],
    ref: dict[str, Estimate],
    pairing: Pairing,
    delta: float,
    predicted: str = "lower",
) -> dict:
    """{"test": the deciding verdict, "per_seed": [each pair's difference and verdict], "pairing": how}."""
    if pairing.pairs is not None:
        per_seed = [_one(a, b, ln[a], ref[b], delta, predicted) for a, b in pairing.pairs]
        if len(per_seed) == 1:
            test = within_run(ln[pairing.pairs[0][0]], ref[pairing.pairs[0][1]], delta, predicted)
        else:
            test = paired_test([p["difference"] for p in per_seed], predicted, delta)
        return {"test": test.as_dict(), "per_seed": per_seed, "pairing": pairing.how}
    return {"test": _unpaired(ln, ref, delta, predicted).as_dict(), "per_seed": [], "pairing": pairing.how}


def within_run(a: Estimate, b: Estimate, delta: float, predicted: str = "lower") -> Verdict:
    """One run's difference a − b, its standard error the two in quadrature (no interval: inconclusive)."""
    diff = a.value - b.value
    if a.se is None or b.se is None:
        return decide(diff, math.nan, math.inf, predicted, delta, 1, "within the run")
    return decide(diff, math.hypot(a.se, b.se), math.inf, predicted, delta, 1, "within the run")


def _one(name_a: str, name_b: str, a: Estimate, b: Estimate, delta: float, predicted: str) -> dict:
    v = within_run(a, b, delta, predicted)
    return {"ln": name_a, "reference": name_b, "difference": a.value - b.value,
            "ci95": v.ci95, "verdict": v.verdict}  # fmt: skip


def _unpaired(ln: dict, ref: dict, delta: float, predicted: str) -> Verdict:
    a, b = [e.value for e in ln.values()], [e.value for e in ref.values()]
    if min(len(a), len(b)) >= 2:
        return welch_test(a, b, predicted, delta)
    many, single, sign = (a, next(iter(ref.values())), 1) if len(a) > 1 else (b, next(iter(ln.values())), -1)
    if single.se is None:
        return decide(math.nan, math.nan, math.inf, predicted, delta, len(a) + len(b), "seeds (unpaired)")
    se = math.sqrt(statistics.variance(many) / len(many) + single.se**2)
    diff = sign * (statistics.fmean(many) - single.value)
    return decide(diff, se, len(many) - 1, predicted, delta, len(a) + len(b), "seeds (unpaired)")


def log_ratios(shift: dict) -> dict[str, float]:
    """{site: log(gap_tuned / gap_base)} at every decoder norm's output of one lnshift record."""
    out = {}
    for site, g in shift["gaps"].items():
        tuned, base = g.get("tuned"), g.get("base")
        if site.endswith(".out") and tuned and base and tuned > 0 and base > 0:
            out[site] = math.log(tuned / base)
    return out


def domain_test(ratios: dict[str, dict[str, float]], delta: float, predicted: str = "lower") -> dict:
    """The domain claim's test over {seed name: {site: log ratio}} (see the module's docstring)."""
    means = {name: statistics.fmean(r.values()) for name, r in ratios.items() if r}
    per_seed = [{"ln": name, "reference": "base", "difference": m, "sites": len(ratios[name])}
                for name, m in means.items()]  # fmt: skip
    if len(means) >= 2:
        test = paired_test(list(means.values()), predicted, delta)
    elif means:  # one seed: its norms are the units
        (name,) = means
        values = list(ratios[name].values())
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
        test = decide(means[name], se, len(values) - 1, predicted, delta, len(values), "sites")
    else:
        test = decide(math.nan, math.nan, math.inf, predicted, delta, 0, "sites")
    return {"test": test.as_dict(), "per_seed": per_seed, "per_site": per_site(ratios)}


def per_site(ratios: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per site: the mean log ratio over seeds, with a t interval when >= 2 seeds have it."""
    sites = {s for r in ratios.values() for s in r}
    out = {}
    for site in sorted(sites, key=_site_order):
        values = [r[site] for r in ratios.values() if site in r]
        mean = statistics.fmean(values)
        ci = None
        if len(values) >= 2:
            half = t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
            ci = (mean - half, mean + half)
        out[site] = {"log_ratio": mean, "ci95": ci, "seeds": len(values)}
    return out


def _site_order(site: str) -> tuple:
    kind, _, rest = site.partition(".")
    index = rest.split(".")[0]
    return (int(index) if index.isdigit() else 10**6, kind)
