"""The claims' runner: the probes on identical seeded inputs, the three verdicts, the report (see the
package's docstring for what is judged and how)."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from lnprobe.claims.causal import causal_summary, run_patch
from lnprobe.claims.config import MARGINS, ClaimsConfig
from lnprobe.claims.inputs import probe_inputs
from lnprobe.claims.judge import Estimate, compare, domain_test, log_ratios
from lnprobe.claims.pairing import pair_seeds
from lnprobe.claims.pool import pool
from lnprobe.claims.report import write_report
from lnprobe.claims.verdicts import sign_verdict
from lnprobe.errors import InputError
from lnprobe.io import saved_path, saved_paths, write_json
from lnprobe.probes import PROBES
from lnprobe.provenance import provenance


def run_claims(cfg: ClaimsConfig) -> dict:
    """Run the probes, judge the three claims, write the report; return the claims record."""
    _check_inputs(cfg)
    with cfg.output().build() as tmp:
        probes = tmp / "probes"
        sims = {
            name: _similarity(cfg, name, spec, probes / f"similarity-{name}")
            for name, spec in cfg.models.items()
        }
        _figures(cfg, probes)
        grads = _gradients(cfg, probes)
        shifts = {
            name: _lnshift(cfg, spec, probes / f"lnshift-{name}") for name, spec in cfg.seeds("ln").items()
        }
        causal = {}
        if cfg.patch:
            causal = {
                name: causal_summary(run_patch(cfg, spec, probes / f"patch-{name}"))
                for name, spec in cfg.seeds("ln").items()
            }
        pairing = pair_seeds(cfg)
        claims = [
            _claim_similarity(cfg, sims, pairing),
            _claim_gradients(cfg, grads, pairing),
            _claim_domain(cfg, shifts, causal),
        ]
        record = {
            "config": _saved_config(cfg),
            "models": saved_paths(cfg.models, cfg.out),
            "claims": claims,
            "similarity": sims,
            "gradients": grads,
            "lnshift_summary": {name: s["summary"] for name, s in shifts.items()},
            "caveats": _caveats(cfg),
            "provenance": provenance(seed=cfg.seed),
        }
        write_json(tmp / "claims.json", record)
        write_report(record, tmp)
    return record


PATH_FIELDS = ("base", "ln", "full", "data", "out", "others", "ln_runs", "full_runs", "image_folder")


def _saved_config(cfg: ClaimsConfig) -> dict:
    """The config as claims.json records it: every path relative to the output folder when it lies in the
    results tree (the demo's folder around the claims', say), else absolute (`lnprobe.io.saved_path`), so a
    moved or copied tree still finds its runs; read back with `lnprobe.io.read_path` from claims.json's
    folder."""
    config = asdict(cfg)
    return {k: saved_paths(v, cfg.out) if k in PATH_FIELDS else v for k, v in config.items()}


def _check_inputs(cfg: ClaimsConfig) -> None:
    from lnprobe.data.llava import read_records
    from lnprobe.models.load import checkpoint_kind

    for spec in cfg.models.values():
        checkpoint_kind(spec)
    records = read_records(cfg.data)
    if len(records) < 8:
        raise InputError(f"{cfg.data}: {len(records)} records; the claims need at least 8")
    if not any(r.image for r in records):
        raise InputError(
            f"{cfg.data}: no record has an image (the domain claim compares image and text tokens)"
        )
    for run in (*cfg.ln_runs, *cfg.full_runs):
        if not Path(run).is_dir():
            raise InputError(f"{run}: no such training run directory")


def _similarity(cfg: ClaimsConfig, name: str, spec: str, out: Path) -> dict:
    from lnprobe.probes.similarity.config import SimilarityConfig

    config = SimilarityConfig(
        a=spec, inputs=probe_inputs(cfg), out=str(out), metrics=("cka", "cosine"), tokens=cfg.tokens,
        keep_sink_tokens=cfg.keep_sink_tokens, sink_factor=cfg.sink_factor,
        bootstrap=cfg.bootstrap, label_a=name,
    )  # fmt: skip
    result = PROBES.get("similarity").run(config)
    out = {m: e["cross_layer_mean"] for m, e in result.metrics.items()}
    null = result.metrics["cka"].get("null")
    if null:  # the statistic above its permutation null (rows of one layer shuffled)
        out["cka_null"] = {**null["cross_layer_mean"], "pairs_above_p95": null["pairs_above_p95"]}
    return out


def _figures(cfg: ClaimsConfig, probes: Path) -> None:
    """The claims' own figures: LN-tuned minus fully finetuned cross-layer CKA (first seed of each), and
    the norm-gradient variance over training when the runs recorded it."""
    from lnprobe.probes.similarity.run import SimilarityResult
    from lnprobe.report.heatmaps import difference_figures
    from lnprobe.report.lines import training_variance_figures

    ln, full = next(iter(cfg.seeds("ln"))), next(iter(cfg.seeds("full")))
    first, second = (SimilarityResult.read(probes / f"similarity-{n}").to_json() for n in (ln, full))
    difference_figures(first, second, probes)
    runs = {f"{w} {i}" if len(r) > 1 else w: run for w, r in (("ln", cfg.ln_runs), ("full", cfg.full_runs))
            for i, run in enumerate(r)}  # fmt: skip
    training_variance_figures(runs, probes)


def _gradients(cfg: ClaimsConfig, probes: Path) -> dict:
    """Norm-gradient variance (value, 95 % interval) per LN-tuned and full model (and the base): from the
    training runs' traces when every LN and full checkpoint has one with >= 3 samples, else offline."""
    from lnprobe.probes.gradvar.config import GradVarConfig
    from lnprobe.probes.gradvar.stats import TRACE_FILE, variance_intervals

    runs = {}
    for which, given in (("ln", cfg.ln_runs), ("full", cfg.full_runs)):
        if given:
            runs.update(zip(cfg.seeds(which), given, strict=True))
    traces = {name: _trace(run) for name, run in runs.items()}
    wanted = [*cfg.seeds("ln"), *cfg.seeds("full")]
    if all(traces.get(n) is not None and traces[n].shape[0] >= 3 for n in wanted):
        out = {}
        for name in wanted:
            trace = traces[name]
            ci = variance_intervals(trace, {"all": (0, trace.shape[1])}).get("all")
            out[name] = {
                "variance": float(trace.var(0).mean()),
                "ci95": list(ci) if ci else None,
                "samples": trace.shape[0],
                "source": f"{saved_path(Path(runs[name]) / TRACE_FILE, cfg.out)} (training)",
            }
        return out
    out = {}
    for name in [*wanted, "base"]:
        result = PROBES.get("gradvar").run(
            GradVarConfig(
                ckpt=cfg.models[name],
                inputs=probe_inputs(cfg),
                out=str(probes / f"gradvar-{name}"),
                groups=("norms",),
            )
        )
        norms = result.kinds["norms"]
        out[name] = {"variance": norms["variance"], "ci95": norms["variance_ci95"],
                     "samples": result.samples, "source": "offline per-example gradients"}  # fmt: skip
    return out


def _trace(run: str | None) -> torch.Tensor | None:
    """The norm-gradient samples a training run recorded (`--gradvar-every`), if any."""
    from safetensors.torch import load_file

    from lnprobe.probes.gradvar.stats import TRACE_FILE

    path = Path(run) / TRACE_FILE if run else None
    return load_file(str(path))["norm_grads"].double() if path and path.is_file() else None


def _lnshift(cfg: ClaimsConfig, spec: str, out: Path) -> dict:
    from lnprobe.probes.lnshift.config import LnShiftConfig

    config = LnShiftConfig(
        ckpt=spec, base=cfg.base, inputs=probe_inputs(cfg), out=str(out),
        keep_sink_tokens=cfg.keep_sink_tokens, sink_factor=cfg.sink_factor,
    )  # fmt: skip
    return PROBES.get("lnshift").run(config).to_json()


def _pooled(cfg: ClaimsConfig, which: str, get) -> dict:
    """`get(name) -> (value, ci)` for every seed of `which` (ln / full), pooled over seeds (detail: each
    side's mean with its t interval over seeds; the claims are decided on differences)."""
    return pool([get(name) for name in cfg.seeds(which)])


def _decided(cfg: ClaimsConfig, claim: str, compared: dict) -> dict:
    """The fields every claim carries: its margin, the deciding test, the per-seed detail."""
    test = compared["test"]
    return {
        "verdict": test["verdict"],
        "margin": {"delta": cfg.margins[claim], "reason": MARGINS[claim][1]},
        "test": test,
        "per_seed": compared["per_seed"],
        "pairing": compared.get("pairing"),
    }


def _claim_similarity(cfg: ClaimsConfig, sims: dict, pairing) -> dict:
    tests, pooled = {}, {}
    for metric in ("cka", "cosine"):
        for which in ("ln", "full"):
            pooled.setdefault(which, {})[metric] = _pooled(
                cfg, which, lambda n, m=metric: (sims[n][m]["value"], _ci(sims[n][m]))
            )
        sides = [{n: Estimate.from_ci(sims[n][metric]["value"], _ci(sims[n][metric])) for n in cfg.seeds(w)}
                 for w in ("ln", "full")]  # fmt: skip
        tests[metric] = compare(*sides, pairing, cfg.margins["cross_layer_similarity"])
    numbers = {name: {m: s[m] for m in ("cka", "cosine", "cka_null") if m in s} for name, s in sims.items()}
    if len(cfg.ln) > 1 or len(cfg.full) > 1:
        numbers.update({f"{w} (pooled)": pooled[w] for w in ("ln", "full")})
    return {
        "id": "cross_layer_similarity",
        "statement": "LN-tuned models have lower cross-layer similarity than fully-finetuned ones",
        "definition": "mean over i != j of the layer x layer similarity of decoder-layer outputs "
        f"({cfg.tokens} tokens), linear CKA with the unbiased HSIC averaged over minibatches (primary) and "
        "mean cosine; LN-tuned minus full-FT per seed (95 % bootstrap intervals over minibatches within a "
        "run), pooled over paired seeds (t interval, sign-flip p)",
        "numbers": numbers,
        **_decided(cfg, "cross_layer_similarity", tests["cka"]),
        "tests": {m: t["test"] for m, t in tests.items()},
    }


def _claim_gradients(cfg: ClaimsConfig, grads: dict, pairing) -> dict:
    logs = {
        w: _pooled(cfg, w, lambda n: (_log(grads[n]["variance"]), _log_ci(grads[n]))) for w in ("ln", "full")
    }
    sides = [{n: _log_estimate(grads[n]) for n in cfg.seeds(w)} for w in ("ln", "full")]
    compared = compare(*sides, pairing, cfg.margins["gradient_variance"])
    numbers = dict(grads)
    if len(cfg.ln) > 1 or len(cfg.full) > 1:
        numbers.update({f"{w} (pooled, log variance)": logs[w] for w in ("ln", "full")})
    return {
        "id": "gradient_variance",
        "statement": "LN tuning gives smaller gradient variance than full finetuning",
        "definition": "tr(Σ)/p of the norm-weight gradients over samples (the micro-batch gradients recorded "
        "in training, or per-example gradients offline), compared as log(variance): LN-tuned minus full-FT "
        "per seed (jackknife interval of the log variance within a run), pooled over paired seeds",
        "numbers": numbers,
        **_decided(cfg, "gradient_variance", compared),
        "tests": {
            "log_variance": compared["test"],
            "ratio_ln_over_full": math.exp(logs["ln"]["value"] - logs["full"]["value"]),
        },  # fmt: skip
    }


def _claim_domain(cfg: ClaimsConfig, shifts: dict, causal: dict) -> dict:
    """The clustered test of the log gap ratios decides; the sign test over every site and `causal` (norm
    patching per LN seed) are cited beside it."""
    pairs = [(g["tuned"], g["base"]) for shift in shifts.values() for s, g in shift["gaps"].items()
             if s.endswith(".out") and g.get("tuned") is not None and g.get("base") is not None]  # fmt: skip
    tested = domain_test({n: log_ratios(s) for n, s in shifts.items()}, cfg.margins["domain_adaptation"])
    first = next(iter(shifts.values()))
    return {
        "id": "domain_adaptation",
        "statement": "the tuned norms bring image-token statistics closer to text-token statistics",
        "definition": "image-vs-text gap at each decoder norm's output (per-dimension Gaussian 2-Wasserstein "
        "distance / text RMS), LN-tuned vs base on the same inputs, as log(gap tuned / gap base); a seed's "
        "effect is its mean over the norms; pooled over seeds (clustered by seed), or over the norms of the "
        "one seed; the exact sign test over every norm of every seed as detail",
        "numbers": first["summary"] if len(shifts) == 1 else {n: s["summary"] for n, s in shifts.items()},
        **_decided(cfg, "domain_adaptation", tested),
        "per_site": tested["per_site"],
        "tests": {"log_gap_ratio": tested["test"], "sign_test": sign_verdict(pairs, "lower").as_dict()},
        "causal": causal,
    }


def _ci(entry: dict) -> tuple[float, float] | None:
    ci = entry.get("ci95")
    return tuple(ci) if ci and None not in ci else None


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _log_ci(entry: dict) -> tuple[float, float] | None:
    ci = _ci(entry)
    return (math.log(ci[0]), math.log(ci[1])) if ci and ci[0] > 0 else None


def _log_estimate(entry: dict) -> Estimate:
    """log(variance) with its within-run standard error (the log-jackknife interval's half-width / 1.96)."""
    return Estimate.from_ci(_log(entry["variance"]), _ci(entry), log=True)


def _caveats(cfg: ClaimsConfig) -> list[str]:
    seeds = min(len(cfg.ln), len(cfg.full))
    notes = [
        "one seed per regime: intervals cover sampling of the inputs, not training randomness; the domain "
        "claim's interval treats the norms of one seed as independent"
        if seeds == 1
        else f"{len(cfg.ln)} LN and {len(cfg.full)} full seeds: the verdicts are tests of the per-seed "
        "differences, whose spread covers training randomness",
        f"{cfg.n} examples from {cfg.data}; statistics at this scale need not transfer to 7B models",
        "intervals of a difference assume independent errors of the two estimates (same inputs make them "
        "positively correlated, so the intervals are conservative)",
    ]
    if torch.cuda.is_available() and cfg.device == "cpu":
        notes.append("run on CPU although a GPU was available")
    return notes
