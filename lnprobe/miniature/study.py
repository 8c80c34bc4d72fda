"""`lnprobe study`: the miniature over several seeds (each seed its own data, connector and sweep), every
regime's accuracy with a t interval over seeds beside the baselines, the issue's goals per seed, and each
claim pooled over seeds. Writes OUT/seed-N/ (one miniature each), OUT/study.json, OUT/study.md and
OUT/accuracy.png + .html; every HTML figure inside OUT loads the one OUT/plotly.min.js.

Every seed starts from the shipped backbones (lnprobe.miniature.backbones) unless `--pretrain` (each seed
pre-trains its own) or `--llm` / `--vision` (HF ids or directories) name others, which are assembled
instead: the recipe for a 1B-7B replication (on a GPU, with real data via the same stages).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from lnprobe.claims.pool import pool
from lnprobe.claims.verdicts import INCONCLUSIVE, OUTCOMES
from lnprobe.miniature.config import MiniatureConfig
from lnprobe.miniature.table import GOALS

COMMAND = "make miniature"  # what produces docs/miniature.md


def run_study(out: Path, cfg: MiniatureConfig, seeds: list[int], progress: bool = True) -> dict:
    from lnprobe.io import marker_command, results_tree, write_marker
    from lnprobe.miniature.pipeline import run_miniature
    from lnprobe.miniature.table import saved_record

    out.mkdir(parents=True, exist_ok=True)
    if marker_command(out) is None:  # `lnprobe study` marks it first; the Python API too (lnprobe report)
        write_marker(out, "study")
    records = {}
    with results_tree(out):  # OUT is the root: one plotly.min.js, paths relative inside it
        for seed in seeds:
            records[seed] = run_miniature(out / f"seed-{seed}", replace(cfg, seed=seed), progress, "study")
        study = summarise(records, cfg)
        (out / "study.json").write_text(json.dumps(saved_record(study, out), indent=1) + "\n")
        _figure(study, out)
    (out / "study.md").write_text(markdown(study))
    return study


def summarise(records: dict[int, dict], cfg: MiniatureConfig) -> dict:
    first = next(iter(records.values()))
    names = [*first["baselines"], *(r["regime"] for r in first["rows"])]
    accuracy = {}
    for name in names:
        per_seed = [_entry(rec, name)["accuracy"] for rec in records.values()]
        accuracy[name] = {
            **_clipped(
                pool(
                    [
                        (a, tuple(_entry(rec, name)["ci95"]))
                        for a, rec in zip(per_seed, records.values(), strict=True)
                    ]
                )
            ),
            "per_seed": per_seed,
            "trainable_pct": _entry(first, name).get("trainable_pct"),
            "lr": [_entry(rec, name).get("lr") for rec in records.values()],
        }
    goals = {key: [rec["goals"][key] for rec in records.values()] for key in GOALS}
    return {
        "config": asdict(cfg),
        "backbones": first.get("backbones", {}),
        "seeds": list(records),
        "accuracy": accuracy,
        "goals": {k: {"per_seed": v, "all": all(x is True for x in v)} for k, v in goals.items()},
        "claims": _claims(records),
        "regime_verdicts": _regime_verdicts(records),
        "timings": {seed: rec["timings"] for seed, rec in records.items()},
    }


def _clipped(pooled: dict) -> dict:
    """An accuracy's interval cut to [0, 1] (a t interval over a few seeds can reach past 1)."""
    if pooled.get("ci95"):
        lo, hi = pooled["ci95"]
        pooled = {**pooled, "ci95": (max(0.0, lo), min(1.0, hi))}
    return pooled


def _entry(record: dict, name: str) -> dict:
    if name in record["baselines"]:
        return record["baselines"][name]
    return next(r for r in record["rows"] if r["regime"] == name)


def pooled_test(per_seed: list[dict], delta: float) -> dict:
    """The study's verdict on one statistic from each seed's {difference, ci95, verdict}: with >= 2 seeds
    the paired test of the differences (`paired_test`: mean, t interval, exact sign-flip p, four outcomes,
    power); with one seed, that seed's own within-run test."""
    from lnprobe.claims.verdicts import interval_test, paired_test

    diffs = [p["difference"] for p in per_seed]
    if len(diffs) >= 2 and all(d is not None for d in diffs):
        test = paired_test(diffs, "lower", delta)
    else:
        first = per_seed[0]
        test = interval_test(first["difference"], first.get("ci95"), "lower", delta)
    return {"per_seed": [p["verdict"] for p in per_seed], "differences": diffs, "verdict": test.verdict,
            "test": test.as_dict()}  # fmt: skip


def _claims(records: dict[int, dict]) -> dict:
    """Per claim: each seed's difference and verdict, and the study's pooled test; for the domain claim
    also the log gap ratio per norm with its t interval over seeds."""
    from lnprobe.claims.config import MARGINS
    from lnprobe.claims.judge import per_site

    ids = list(next(iter(records.values()))["claim_tests"])
    out = {}
    for cid in ids:
        per_seed = [rec["claim_tests"][cid] for rec in records.values()]
        out[cid] = {**pooled_test(per_seed, MARGINS[cid][0]), "delta": MARGINS[cid][0]}
        if per_seed[0].get("per_site"):
            out[cid]["per_site"] = per_site({seed: rec["claim_tests"][cid]["per_site"]
                                             for seed, rec in records.items()})  # fmt: skip
    return out


def _regime_verdicts(records: dict[int, dict]) -> dict:
    """Per regime and statistic: each seed's difference from full and verdict, and the pooled test."""
    from lnprobe.claims.config import MARGINS

    first = next(iter(records.values()))["regime_verdicts"]
    out: dict = {}
    for regime, tests in first.items():
        for stat in tests:
            per_seed = [rec["regime_verdicts"].get(regime, {}).get(stat) for rec in records.values()]
            if any(p is None for p in per_seed):
                continue
            out.setdefault(regime, {})[stat] = pooled_test(per_seed, MARGINS[stat][0])
    return out


def _figure(study: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    from lnprobe.report.page import write_page

    names = list(study["accuracy"])
    acc = [study["accuracy"][n] for n in names]
    err = [
        [a["value"] - (a["ci95"] or [a["value"]] * 2)[0] for a in acc],
        [(a["ci95"] or [a["value"]] * 2)[1] - a["value"] for a in acc],
    ]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(names, [a["value"] for a in acc], yerr=err, capsize=4, color="#4c72b0")
    ax.set_ylabel("held-out accuracy (95 % CI)")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)
    page = go.Figure(
        go.Bar(
            x=names,
            y=[a["value"] for a in acc],
            error_y={"type": "data", "symmetric": False, "array": err[1], "arrayminus": err[0]},
        )
    )
    page.update_layout(yaxis_title="held-out accuracy (95 % CI)", yaxis_range=[0, 1])
    write_page(page, out / "accuracy.html")  # plotly.min.js from OUT: opens offline


def markdown(study: dict) -> str:
    seeds = study["seeds"]
    lines = [
        "# The paper miniature: results",
        "",
        f"Produced by `{COMMAND}` (`lnprobe study --seeds {len(seeds)}`); numbers below are copied from its "
        "`study.json`, nothing by hand.",
        "",
        f"Seeds: {', '.join(map(str, seeds))}. Accuracy is exact-match on the held-out questions; "
        "the interval is "
        + ("a t interval over seeds." if len(seeds) > 1 else "the run's 95 % Wilson interval."),
        "",
        _backbones(study),
        "",
        "Each regime's learning rate is picked per seed from its grid by the answer accuracy on the "
        "validation questions (the lower validation loss breaks ties).",
        "",
        "| regime | trainable % | accuracy (mean) | 95 % CI | per seed | learning rate per seed |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, a in study["accuracy"].items():
        pct = "-" if a["trainable_pct"] is None else f"{a['trainable_pct']:.3f}"
        lo, hi = a["ci95"] or (None, None)
        ci = "-" if lo is None else f"[{lo:.3f}, {hi:.3f}]"
        per_seed = ", ".join(f"{x:.3f}" for x in a["per_seed"])
        lrs = "-" if a["lr"][0] is None else ", ".join(f"{x:g}" for x in a["lr"])
        lines.append(f"| {name} | {pct} | {a['value']:.3f} | {ci} | {per_seed} | {lrs} |")
    lines += ["", "![accuracy](miniature/accuracy.png)", "", "## The goals", ""]
    for key, g in study["goals"].items():
        marks = ", ".join("met" if x else ("-" if x is None else "not met") for x in g["per_seed"])
        lines.append(f"- {GOALS[key]}: **{'met on every seed' if g['all'] else 'NOT met'}** ({marks})")
    lines += ["", "## The claims", ""] + claim_lines(study)
    lines += ["", "## What this says", "", _reading(study), ""]
    return "\n".join(lines) + "\n"


def _backbones(study: dict) -> str:
    cfg = study["config"]
    if cfg.get("pretrain"):
        return "Each seed pre-trains its own vision tower and text LLM (`--pretrain`)."
    if not (cfg.get("llm") or cfg.get("vision")):
        return (
            "Every seed starts from the shipped backbones (`lnprobe pretrain backbones`, `make backbones`: a "
            "text LLM and a CLIP vision tower pre-trained on a synthetic world of their own, seed 1000)."
        )
    return f"Backbones: LLM `{cfg.get('llm') or 'shipped'}`, vision tower `{cfg.get('vision') or 'shipped'}`."


def _f(x, spec=".3g") -> str:
    return "-" if x is None else format(x, spec)


def _ci(ci) -> str:
    return "-" if not ci or None in ci else f"[{_f(ci[0])}, {_f(ci[1])}]"


def claim_lines(study: dict) -> list[str]:
    """The claims' table (pooled test per claim, then every regime against full) and the domain claim's
    effect per norm."""
    seeds = len(study["seeds"])
    test_kind = (f"the paired test over {seeds} seeds (mean of the per-seed differences, t interval, exact "
                 "sign-flip p)" if seeds > 1 else "one seed's within-run test")  # fmt: skip
    lines = [
        f"Each claim is decided by {test_kind}, on the difference LN minus reference (full finetuning; the "
        "base for the domain claim), whose sign the paper predicts negative. Outcomes: *supported* (95 % "
        "interval below 0), *refuted* (above 0), *no effect beyond δ* (90 % interval inside ±δ, two one-"
        "sided tests), *inconclusive* (else: with the smallest effect the design detects at 80 % power, "
        "and the seeds that would detect δ). The margins δ are fixed in `lnprobe.claims.config.MARGINS` "
        "(docs/statistics.md#margins).",
        "",
        "| claim | outcome | difference (mean) | 95 % CI | δ | sign-flip p | MDE (80 %) | seeds for δ "
        "| seeds for the mean | per seed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = [(f"`{cid}`", c) for cid, c in study["claims"].items()]
    rows += [  # ln's rows are the claims above
        (f"`{r}` vs full: {stat}", c)
        for r, t in study["regime_verdicts"].items()
        if r != "ln"
        for stat, c in t.items()
    ]
    for name, c in rows:
        t = c["test"]
        per_seed = ", ".join(f"{_f(d)} ({v})" for d, v in zip(c["differences"], c["per_seed"], strict=True))
        lines.append(f"| {name} | **{c['verdict']}** | {_f(t['statistic'])} | {_ci(t['ci95'])} | "
                     f"{_f(t['delta'])} | {_f(t.get('p_permutation'))} | {_f(t.get('mde'))} | "
                     f"{_f(t.get('units_for_delta'), 'd')} | {_f(t.get('units_for_estimate'), 'd')} | "
                     f"{per_seed} |")  # fmt: skip
    domain = study["claims"].get("domain_adaptation", {}).get("per_site")
    if domain:
        lines += ["", "The domain claim per norm: log(gap tuned / gap base), mean over seeds with its t "
                  "interval (negative: the tuned norm narrows the image-vs-text gap):", "",
                  "| norm output | log ratio | 95 % CI |", "|---|---:|---:|"]  # fmt: skip
        lines += [f"| {s} | {_f(e['log_ratio'])} | {_ci(e['ci95'])} |" for s, e in domain.items()]
    return lines


def _reading(study: dict) -> str:
    learned = study["goals"]["full_accuracy"]["all"] and study["goals"]["above_blind"]["all"]
    if not learned:
        return (
            "The models did not learn the task well enough for the goals (see above), so the claims' "
            "verdicts are computed on models that have not learned it: they neither support nor refute the "
            "paper. What the miniature tells today is only that the pipeline runs and the statistics are "
            "computed."
        )
    by = {o: [c for c, v in study["claims"].items() if v["verdict"] == o] for o in OUTCOMES}
    missed = [GOALS[k] for k, g in study["goals"].items() if not g["all"]]
    text = (
        "The models learned the task (full finetuning above the goal, every regime above the blind "
        "baseline on every seed)"
        + (f"; not met on every seed: {'; '.join(missed)}" if missed else "")
        + ". "
        + ". ".join(f"{o[0].upper()}{o[1:]}: {', '.join(f'`{c}`' for c in cs)}" for o, cs in by.items() if cs)
        + "."
    )
    for cid in by[INCONCLUSIVE]:
        test = study["claims"][cid]["test"]
        need, observed = test.get("units_for_delta"), test.get("units_for_estimate")
        if need:
            text += (f" `{cid}`: at the observed spread between seeds, detecting δ with 80 % power would "
                     f"take about {need} seeds ({_reach(study, need)})")  # fmt: skip
            if observed and observed < need:
                text += (f"; the observed mean difference, were it the true one, about {observed} "
                         f"({_reach(study, observed)})")  # fmt: skip
            text += "."
    return text


def _reach(study: dict, seeds: int) -> str:
    """Whether `seeds` seeds fit a day on this machine, from the measured time per seed."""
    per_seed = [sum(t.values()) for t in study.get("timings", {}).values() if t]
    if not per_seed:
        return "time per seed unknown"
    hours = seeds * sum(per_seed) / len(per_seed) / 3600
    reach = "within reach: under a day" if hours <= 24 else "out of reach here: more than a day"
    return f"~{hours:.1f} h of this machine at this run's time per seed, {reach}"
