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
REAL_COMMAND = "make real-study"  # what produces docs/real-study.md (--data)


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
            seed_cfg = replace(cfg, seed=seed)
            if cfg.pick_once and records:
                seed_cfg = at_first_picks(seed_cfg, next(iter(records.values())))
            records[seed] = run_miniature(out / f"seed-{seed}", seed_cfg, progress, "study")
        study = summarise(records, cfg)
        (out / "study.json").write_text(json.dumps(saved_record(study, out), indent=1) + "\n")
        _figure(study, out)
    (out / "study.md").write_text(markdown(study))
    return study


def at_first_picks(cfg: MiniatureConfig, first: dict) -> MiniatureConfig:
    """`pick_once`: a later seed's settings, each regime trained at the learning rate the first seed's sweep
    picked (a grid of one)."""
    picked = {row["regime"]: row["lr"] for row in first["rows"]}
    return replace(cfg, lr_factors=(1.0,), centre_lrs={**cfg.centre_lrs, **picked})


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
    goals = {key: [rec["goals"][key] for rec in records.values()] for key in first["goals"]}
    return {
        "config": asdict(cfg),
        "backbones": first.get("backbones", {}),
        "seeds": list(records),
        "accuracy": accuracy,
        "goals": {k: {"per_seed": v, "all": all(x is True for x in v)} for k, v in goals.items()},
        "claims": _claims(records),
        "regime_verdicts": _regime_verdicts(records),
        "forgetting": _forgetting(records),
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


def _forgetting(records: dict[int, dict]) -> dict:
    """Per regime: the text loss change (tuned minus base, nats/token) and next-token accuracy change, each
    seed's value and their mean with a t interval over seeds (one seed: its interval over windows)."""
    first = next(iter(records.values()))
    lost = first.get("forgetting") or {}
    out = {}
    for regime in lost.get("regimes", {}):
        entry = {}
        for stat in ("loss_change", "accuracy_change"):
            per_seed = [rec["forgetting"]["regimes"][regime][stat] for rec in records.values()]
            pooled = pool([(p["value"], tuple(p["ci95"])) for p in per_seed])
            entry[stat] = {**pooled, "per_seed": [p["value"] for p in per_seed]}
        entry["loss_before"] = [
            rec["forgetting"]["regimes"][regime]["loss_before"] for rec in records.values()
        ]
        out[regime] = entry
    return {"text": lost.get("text"), "windows": lost.get("windows"), "regimes": out} if out else {}


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


def markdown(study: dict, command: str | None = None, figures: str = "miniature") -> str:
    """study.md: every table from `study` (nothing by hand). `command` is what produced it (default: the
    miniature's make target, or `make real-study` on --data); `figures` the folder its PNGs are shown from
    (relative to the document: where the make target copies them)."""
    seeds, cfg = study["seeds"], study["config"]
    synthetic = not cfg.get("data")
    command = command or (COMMAND if synthetic else REAL_COMMAND)
    lines = [
        "# The paper miniature: results" if synthetic else "# The study on your data: results",
        "",
        f"Produced by `{command}` (`lnprobe study --seeds {len(seeds)}`); numbers below are copied from its "
        "`study.json`, nothing by hand.",
        "",
        f"Seeds: {', '.join(map(str, seeds))}. Accuracy is the normalised exact match (VQA's answer "
        "normalisation) of the greedy answer on the held-out questions; the interval is "
        + ("a t interval over seeds." if len(seeds) > 1 else "the run's 95 % Wilson interval."),
        "",
        _data(cfg),
        "",
        _backbones(study),
        "",
        _lr_rule(cfg),
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
    lines += ["", f"![accuracy]({figures}/accuracy.png)", "", "## The goals", ""]
    for key, g in study["goals"].items():
        marks = ", ".join("met" if x else ("-" if x is None else "not met") for x in g["per_seed"])
        lines.append(f"- {GOALS[key]}: **{'met on every seed' if g['all'] else 'NOT met'}** ({marks})")
    lines += forgetting_lines(study)
    lines += ["", "## The claims", ""] + claim_lines(study)
    lines += ["", "## What this says", "", _reading(study), ""]
    lines += cost_lines(study)
    return "\n".join(lines) + "\n"


def _data(cfg: dict) -> str:
    if not cfg.get("data"):
        return "Data: the synthetic shapes task, drawn per seed (`lnprobe data synth`)."
    val = (
        f"`{cfg['val_data']}`" if cfg.get("val_data") else f"{cfg['val_fraction']:g} of its images (per seed)"
    )
    captions = f"`{cfg['pretrain_data']}`" if cfg.get("pretrain_data") else "the training questions"
    return (f"Data: training questions `{cfg['data']}`, validation {val}, held-out questions "
            f"`{cfg['eval_data']}`; the connector stage trains on {captions}. Template "
            f"`{cfg.get('template')}`. "
            "Question kinds are the records' `qtype` where given, else their first two words.")  # fmt: skip


def _lr_rule(cfg: dict) -> str:
    rule = ("Each regime's learning rate is picked from its grid by the answer accuracy on the validation "
            "questions (the lower validation loss breaks ties)")  # fmt: skip
    if cfg.get("pick_once"):
        return rule + ", on the first seed's sweep; later seeds train at those rates (`--pick-once`)."
    return rule + ", per seed."


def forgetting_lines(study: dict) -> list[str]:
    """The forgetting table: per regime the text loss and next-token accuracy change, pooled over seeds."""
    lost = study.get("forgetting") or {}
    if not lost.get("regimes"):
        return []
    lines = ["", "## Forgetting", "",
             f"Text loss (nats/token) and next-token accuracy on held-out text (`{lost['text']}`, "
             f"{lost['windows']} windows), each finetuned model minus the connector-pretrained base; "
             "mean over seeds with its interval. Positive loss change: the finetuning cost text ability.",
             "", "| regime | text loss before | loss change | 95 % CI | accuracy change | 95 % CI |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for regime, e in lost["regimes"].items():
        before = sum(e["loss_before"]) / len(e["loss_before"])
        loss, acc = e["loss_change"], e["accuracy_change"]
        lines.append(f"| {regime} | {before:.3f} | {_f(loss['value'], '+.4f')} | {_ci(loss['ci95'])} | "
                     f"{_f(acc['value'], '+.4f')} | {_ci(acc['ci95'])} |")  # fmt: skip
    return lines


def cost_lines(study: dict) -> list[str]:
    """Wall seconds per stage and seed (each stage's first run in its folder, as `timings.json` recorded it)
    and the totals: what the study cost on the machine that ran it."""
    timings = {seed: t for seed, t in (study.get("timings") or {}).items() if t}
    if not timings:
        return []
    stages = list(dict.fromkeys(k for t in timings.values() for k in t))
    seeds = list(timings)
    lines = ["## Cost", "", "Wall seconds per stage, as each seed's `timings.json` recorded them (a stage "
             "reused from an earlier run keeps its first time).", "",
             "| stage | " + " | ".join(f"seed {s}" for s in seeds) + " | total |",
             "|---|" + "---:|" * (len(seeds) + 1)]  # fmt: skip
    for stage in [*stages, "total"]:
        values = [sum(t.values()) if stage == "total" else t.get(stage) for t in timings.values()]
        known = [v for v in values if v is not None]
        cells = " | ".join("-" if v is None else f"{v:,.0f}" for v in values)
        lines.append(f"| {stage} | {cells} | {sum(known):,.0f} |")
    total = sum(sum(t.values()) for t in timings.values())
    return [*lines, "", f"In all {total / 3600:.2f} h ({total / 60:.0f} min).", ""]


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
    goals = study["goals"]
    full = goals.get("full_accuracy") or goals.get("full_over_majority") or {"all": False}
    learned = full["all"] and goals["above_blind"]["all"]
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


# the first seed's 30-layer figures a published study shows (under OUT/seed-N/claims/probes), with captions
FIGURES = {
    "similarity-base/similarity_cka.png": "cross-layer CKA of the connector-pretrained base (text tokens)",
    "similarity-ln/similarity_cka.png": "cross-layer CKA after ln",
    "similarity-full/similarity_cka.png": "cross-layer CKA after full finetuning",
    "cka_difference.png": "CKA difference, ln minus full",
    "lnshift-ln/lnshift.png": "how ln moved each norm, and the image-vs-text gap around it",
    "gradvar_training.png": "norm-gradient variance during training",
}


def publish(out: Path, document: Path, figures: Path) -> Path:
    """OUT/study.md as a document elsewhere (`make real-study`: docs/real-study.md): the markdown with its
    figures in `figures` (the accuracy plot and the first seed's FIGURES that exist), linked relative to the
    document. Returns the document."""
    import os
    import shutil

    from lnprobe.textio import read_json

    study = read_json(out / "study.json", "study results")
    figures.mkdir(parents=True, exist_ok=True)
    link = Path(os.path.relpath(figures, document.parent)).as_posix()
    shutil.copyfile(out / "accuracy.png", figures / "accuracy.png")
    probes = out / f"seed-{study['seeds'][0]}" / "claims" / "probes"
    shown = []
    for name, caption in FIGURES.items():
        if (probes / name).is_file():
            target = name.replace("/", "_")
            shutil.copyfile(probes / name, figures / target)
            shown.append(f"![{caption}]({link}/{target})\n\n*{caption} (seed {study['seeds'][0]}).*\n")
    text = markdown(study, figures=link)
    if shown:
        text += "\n## Figures\n\n" + "\n".join(shown)
    document.write_text(text)
    return document


def _main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Publish a study's report as a document with its figures.")
    ap.add_argument("out", type=Path, help="The study's folder (holding study.json).")
    ap.add_argument("--document", type=Path, required=True, help="Markdown file to write.")
    ap.add_argument("--figures", type=Path, required=True, help="Folder for its figures.")
    args = ap.parse_args(argv)
    print(f"wrote {publish(args.out, args.document, args.figures)}")


if __name__ == "__main__":
    _main()
