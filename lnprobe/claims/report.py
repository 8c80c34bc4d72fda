"""The claims report: report.md (figures linked) and a self-contained report.html (figures embedded)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

FIGURES = [
    ("probes/similarity-ln/similarity_cka.png", "Cross-layer linear CKA, LN-tuned"),
    ("probes/similarity-full/similarity_cka.png", "Cross-layer linear CKA, fully finetuned"),
    ("probes/gradvar-ln/gradvar.png", "Norm-gradient variance per layer, LN-tuned"),
    ("probes/gradvar-full/gradvar.png", "Norm-gradient variance per layer, fully finetuned"),
    ("probes/lnshift-ln/lnshift.png", "LayerNorm shift and image-vs-text gap, LN-tuned vs base"),
]


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _ci(ci) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "n/a"


def _sections(record: dict) -> list[tuple[str, list[str]]]:
    """(title, markdown lines) per claim."""
    out = []
    for claim in record["claims"]:
        lines = [f"**Claim:** {claim['statement']}.", "", f"**Statistic:** {claim['definition']}.", ""]
        if claim["id"] == "cross_layer_similarity":
            lines += ["| model | CKA | 95 % CI | cosine | 95 % CI |", "|---|---|---|---|---|"]
            for name, s in claim["numbers"].items():
                cka, cos = s["cka"], s["cosine"]
                lines.append(f"| {name} | {_fmt(cka['value'])} | {_ci(cka['ci95'])} | {_fmt(cos['value'])} "
                             f"| {_ci(cos['ci95'])} |")  # fmt: skip
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
        for name, test in claim["tests"].items():
            if isinstance(test, dict):
                lines.append(
                    f"- {name}: {test['verdict']} — {test['reason']}; statistic {_fmt(test['statistic'])}, "
                    f"95 % CI {_ci(test['ci95'])}, p {_fmt(test['p_value'])}"
                )
            else:
                lines.append(f"- {name}: {_fmt(test)}")
        lines += ["", f"**Verdict: {claim['verdict']}.**"]
        out.append((claim["id"].replace("_", " "), lines))
    return out


def write_report(record: dict, out: Path) -> None:
    head = [
        "# lnprobe claims report",
        "",
        "Models: " + ", ".join(f"{k} = `{v}`" for k, v in record["models"].items()),
    ]
    head += ["", "| claim | verdict |", "|---|---|"]
    head += [f"| {c['statement']} | **{c['verdict']}** |" for c in record["claims"]]
    md = head + [""]
    for title, lines in _sections(record):
        md += [f"## {title}", "", *lines, ""]
    figures = [(p, cap) for p, cap in FIGURES if (out / p).is_file()]
    md += ["## Figures", ""] + [f"![{cap}]({p})" for p, cap in figures] + [""]
    md += ["## Caveats", ""] + [f"- {c}" for c in record["caveats"]] + [""]
    prov = record["provenance"]
    md += [
        "## Provenance",
        "",
        f"git {prov.get('git_sha')}, seed {prov.get('seed')}, {prov.get('time', '')}",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))
    (out / "report.html").write_text(_html(md, figures, out))


def _html(md: list[str], figures: list[tuple[str, str]], out: Path) -> str:
    """A minimal markdown-to-HTML rendering (headings, tables, lists, paragraphs) with figures inlined."""
    body, table = [], []

    def flush() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [
                [html.escape(c.strip()).replace("**", "") for c in r.strip("|").split("|")] for r in rows
            ]
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
                        + "</table>")  # fmt: skip
            table.clear()

    for line in md:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            continue
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    flush()
    for path, caption in figures:
        data = base64.b64encode((out / path).read_bytes()).decode()
        body.append(f'<figure><img src="data:image/png;base64,{data}" style="max-width:100%">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    head = f"<head><meta charset='utf-8'><title>lnprobe claims</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>\n"
