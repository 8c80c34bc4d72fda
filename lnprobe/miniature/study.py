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
from lnprobe.claims.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
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


def _claims(records: dict[int, dict]) -> dict:
    """Per claim: each seed's verdict and the study's (all seeds agree -> that verdict, else inconclusive)."""
    ids = list(next(iter(records.values()))["claims"])
    out = {}
    for cid in ids:
        verdicts = [rec["claims"][cid] for rec in records.values()]
        agreed = verdicts[0] if len(set(verdicts)) == 1 else INCONCLUSIVE
        out[cid] = {"per_seed": verdicts, "verdict": agreed}
    return out


def _regime_verdicts(records: dict[int, dict]) -> dict:
    """Per regime and statistic: each seed's verdict against full and the study's (seeds agree, else
    inconclusive)."""
    first = next(iter(records.values()))["regime_verdicts"]
    out: dict = {}
    for regime, tests in first.items():
        for stat in tests:
            per_seed = [
                rec["regime_verdicts"].get(regime, {}).get(stat, INCONCLUSIVE) for rec in records.values()
            ]
            verdict = per_seed[0] if len(set(per_seed)) == 1 else INCONCLUSIVE
            out.setdefault(regime, {})[stat] = {"per_seed": per_seed, "verdict": verdict}
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
    lines += ["", "## The claims", ""]
    for cid, c in study["claims"].items():
        lines.append(f"- `{cid}`: **{c['verdict']}** (per seed: {', '.join(c['per_seed'])})")
    lines += [
        "",
        "Every regime against full finetuning (lower predicted; the paper's claims concern `ln`):",
        "",
    ]
    for regime, tests in study["regime_verdicts"].items():
        text = "; ".join(f"{k}: **{v['verdict']}** ({', '.join(v['per_seed'])})" for k, v in tests.items())
        lines.append(f"- `{regime}`: {text}")
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


def _reading(study: dict) -> str:
    learned = study["goals"]["full_accuracy"]["all"] and study["goals"]["above_blind"]["all"]
    if not learned:
        return (
            "The models did not learn the task well enough for the goals (see above), so the claims' "
            "verdicts are computed on models that have not learned it: they neither support nor refute the "
            "paper. What the miniature tells today is only that the pipeline runs and the statistics are "
            "computed."
        )
    supported = [c for c, v in study["claims"].items() if v["verdict"] == SUPPORTED]
    refuted = [c for c, v in study["claims"].items() if v["verdict"] == NOT_SUPPORTED]
    missed = [GOALS[k] for k, g in study["goals"].items() if not g["all"]]
    return (
        "The models learned the task (full finetuning above the goal, every regime above the blind "
        "baseline on every seed)"
        + (f"; not met on every seed: {'; '.join(missed)}" if missed else "")
        + f". Supported on every seed: {', '.join(supported) or 'none'}; refuted on every seed: "
        f"{', '.join(refuted) or 'none'}; the rest cannot be told at this scale."
    )
