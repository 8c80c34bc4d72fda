"""The claims report: report.md (figures linked, each in its claim's section) and a self-contained
report.html rendered from it (lnprobe.report.markdown: figures embedded, a table of contents)."""

from __future__ import annotations

from pathlib import Path

from lnprobe.claims.causal import causal_lines
from lnprobe.report.markdown import provenance_lines, write_pages

# each claim's figures, by the probe folders claims writes
FIGURES = {
    "cross_layer_similarity": [
        ("probes/similarity-ln/similarity_cka.png", "Cross-layer linear CKA, LN-tuned"),
        ("probes/similarity-full/similarity_cka.png", "Cross-layer linear CKA, fully finetuned"),
        ("probes/cka_difference.png", "LN-tuned minus fully finetuned cross-layer CKA (blue: less alike)"),
    ],
    "gradient_variance": [
        ("probes/gradvar-ln/gradvar.png", "Norm-gradient variance per layer, LN-tuned"),
        ("probes/gradvar-full/gradvar.png", "Norm-gradient variance per layer, fully finetuned"),
        ("probes/gradvar_training.png", "Norm-gradient variance over training, LN-tuned and fully finetuned"),
    ],
    "domain_adaptation": [
        ("probes/lnshift-ln/lnshift.png", "LayerNorm shift and image-vs-text gap, LN-tuned vs base"),
        (
            "probes/patch-ln/patch.png",
            "Norm patching, LN-tuned vs base: the loss gap each norm recovers / loses",
        ),
        ("probes/patch-ln/patch_tokens.png", "Norm outputs patched into the base, by token kind"),
    ],
}


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _ci(ci) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "n/a"


def _sections(record: dict, out: Path) -> list[tuple[str, list[str]]]:
    """(title, markdown lines) per claim, its figures (those present under `out`) at the end."""
    sections = []
    for claim in record["claims"]:
        lines = [f"**Claim:** {claim['statement']}.", "", f"**Statistic:** {claim['definition']}.", ""]
        if claim["id"] == "cross_layer_similarity":
            lines += ["| model | CKA | 95 % CI | CKA null mean / p95 (p) | cosine | 95 % CI |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
            for name, s in claim["numbers"].items():
                cka, cos, null = s["cka"], s["cosine"], s.get("cka_null")
                above = f"{_fmt(null['mean'])} / {_fmt(null['p95'])} ({_fmt(null['p'])})" if null else "-"
                lines.append(f"| {name} | {_fmt(cka['value'])} | {_ci(cka['ci95'])} | {above} | "
                             f"{_fmt(cos['value'])} | {_ci(cos['ci95'])} |")  # fmt: skip
        elif claim["id"] == "gradient_variance":
            lines += ["| model | variance | 95 % CI | samples | source |", "|---|---|---|---|---|"]
            for name, g in claim["numbers"].items():
                value, samples = g.get("variance", g.get("value")), g.get("samples", g.get("seeds"))
                source = g.get("source", g.get("interval"))
                lines.append(f"| {name} | {_fmt(value)} | {_ci(g['ci95'])} | {samples} | {source} |")
        else:
            lines += ["| summary | value |", "|---|---|"]
            for k, v in claim["numbers"].items():
                items = v.items() if isinstance(v, dict) else [("", v)]
                lines += [f"| {k}{'.' + sub if sub else ''} | {_fmt(x)} |" for sub, x in items]
        lines.append("")
        lines += decision_lines(claim)
        lines += ["Detail:", ""]
        for name, test in claim["tests"].items():
            if isinstance(test, dict):
                lines.append(
                    f"- {name}: {test['verdict']} — {test['reason']}; statistic {_fmt(test['statistic'])}, "
                    f"95 % CI {_ci(test['ci95'])}, p {_fmt(test['p_value'])}"
                )
            else:
                lines.append(f"- {name}: {_fmt(test)}")
        lines += ["", f"**Verdict: {claim['verdict']}.**", ""]
        if claim.get("causal"):
            lines += causal_lines(claim["causal"])
        lines += [f"![{cap}]({p})" for p, cap in FIGURES.get(claim["id"], []) if (out / p).is_file()]
        sections.append((claim["id"].replace("_", " "), lines))
    return sections


def decision_lines(claim: dict) -> list[str]:
    """The deciding test of a claim (its margin, intervals, power) and its per-seed / per-site detail."""
    test, margin = claim.get("test"), claim.get("margin")
    if not test:
        return []
    units = f"{test.get('units')} {test.get('unit')}" if test.get("unit") != "within the run" else "one run"
    pairing = claim.get("pairing") or "one side per seed"
    lines = [f"**Test** ({units}; {pairing}): difference {_fmt(test['statistic'])}, 95 % CI "
             f"{_ci(test['ci95'])}, p {_fmt(test['p_value'])}"]  # fmt: skip
    if test.get("p_permutation") is not None:
        lines[-1] += f", exact sign-flip p {_fmt(test['p_permutation'])}"
    if margin:
        lines += ["", f"Margin δ = {_fmt(margin['delta'])} ({margin['reason']}); 90 % CI "
                      f"{_ci(test.get('ci90'))}, TOST p {_fmt(test.get('p_equivalence'))}."]  # fmt: skip
    if test.get("mde") is not None:
        power = f"Minimum detectable effect at 80 % power: {_fmt(test['mde'])}"
        if test.get("units_for_delta"):
            power += f"; seeds that would detect δ: {test['units_for_delta']}"
        lines += ["", power + "."]
    lines += ["", f"Outcome: {test['verdict']} — {test['reason']}.", ""]
    if len(claim.get("per_seed") or []) > 1:
        lines += ["| LN | reference | difference | 95 % CI (within run) | verdict |", "|---|---|---|---|---|"]
        lines += [f"| {p['ln']} | {p['reference']} | {_fmt(p['difference'])} | {_ci(p.get('ci95'))} | "
                  f"{p.get('verdict', '-')} |" for p in claim["per_seed"]] + [""]  # fmt: skip
    if claim.get("per_site"):
        lines += [
            "| norm output | log(gap tuned / gap base) | 95 % CI over seeds | seeds |",
            "|---|---|---|---|",
        ]
        lines += [f"| {s} | {_fmt(e['log_ratio'])} | {_ci(e['ci95'])} | {e['seeds']} |"
                  for s, e in claim["per_site"].items()] + [""]  # fmt: skip
    return lines


def write_report(record: dict, out: Path) -> None:
    """OUT/report.md and OUT/report.html from the claims record (also `lnprobe report OUT`)."""
    head = [
        "# lnprobe claims report",
        "",
        "Models: " + ", ".join(f"{k} = `{v}`" for k, v in record["models"].items()),
    ]
    head += ["", "| claim | verdict |", "|---|---|"]
    head += [f"| {c['statement']} | **{c['verdict']}** |" for c in record["claims"]]
    md = head + [""]
    for title, lines in _sections(record, out):
        md += [f"## {title}", "", *lines, ""]
    md += ["## Caveats", ""] + [f"- {c}" for c in record["caveats"]] + [""]
    md += ["## Provenance", "", *provenance_lines(record["provenance"]), ""]
    write_pages("\n".join(md), out, "lnprobe claims report")
