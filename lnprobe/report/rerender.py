"""`lnprobe report PATH`: re-render a result folder's report from its saved JSON, with no model loaded.

    claims      report.md / report.html from claims.json (as `lnprobe claims` writes them)
    demo        its claims report (PATH/claims)
    study       study.md / study.html from study.json
    similarity, gradvar, lnshift, patch, attention, linprobe, eval
                report.md / report.html: the configuration, the headline numbers, every figure in the
                folder and the provenance

The folder must be one lnprobe wrote (its marker names the command); only the report files are replaced.
"""

from __future__ import annotations

from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.io import MARKER, marker_command
from lnprobe.report.markdown import provenance_lines, write_pages
from lnprobe.textio import read_json

RESULT_FILES = {
    "similarity": "similarity.json",
    "gradvar": "gradvar.json",
    "lnshift": "lnshift.json",
    "patch": "patch.json",
    "attention": "attention.json",
    "linprobe": "linprobe.json",
    "eval": "results.json",
}


def rerender(path: str | Path) -> list[Path]:
    """Re-render the report(s) of the folder `path`; returns the files written."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such directory")
    command = marker_command(path)
    if command is None:
        raise InputError(f"{path}: not a folder lnprobe wrote (no {MARKER})")
    if command == "demo":
        return rerender(path / "claims")
    if command == "claims":
        from lnprobe.claims.report import write_report

        write_report(_read(path / "claims.json"), path)
        return [path / "report.md", path / "report.html"]
    if command == "study":
        from lnprobe.miniature.study import markdown

        return list(write_pages(markdown(_read(path / "study.json")), path, "lnprobe study", stem="study"))
    if command in RESULT_FILES:
        record = _read(path / RESULT_FILES[command])
        return list(write_pages(probe_markdown(command, record, path), path, f"lnprobe {command}"))
    raise InputError(f"{path}: `lnprobe {command}` writes no report (reports: claims, demo, study, "
                     f"{', '.join(RESULT_FILES)})")  # fmt: skip


def _read(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: missing (the report is rendered from it)")
    record = read_json(path)
    if not isinstance(record, dict):
        raise InputError(f"{path}: expected a JSON object")
    return record


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def probe_markdown(command: str, record: dict, folder: Path) -> str:
    """A probe's or benchmark's report: configuration, headline numbers, figures, provenance."""
    lines = [f"# lnprobe {command}", "", "## Configuration", "", "| option | value |", "|---|---|"]
    config = record.get("config", {})
    flat = {**{k: v for k, v in config.items() if k != "inputs"}, **config.get("inputs", {})}
    lines += [f"| {k} | {_fmt(v)} |" for k, v in flat.items() if not isinstance(v, dict)]
    lines += ["", "## Results", "", *_numbers(command, record), ""]
    figures = sorted(folder.glob("*.png"))
    if figures:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    lines += ["## Provenance", "", *provenance_lines(record.get("provenance", {})), ""]
    return "\n".join(lines)


def _numbers(command: str, record: dict) -> list[str]:
    rows: list[tuple[str, object, object]] = []
    if command == "similarity":
        for name, entry in record.get("metrics", {}).items():
            s = entry.get("cross_layer_mean") or entry.get("diagonal_mean") or {}
            kind = "cross-layer mean" if "cross_layer_mean" in entry else "diagonal mean"
            rows.append((f"{name} {kind}", s.get("value"), s.get("ci95")))
    elif command == "gradvar":
        for kind, s in record.get("kinds", {}).items():
            rows.append((f"{kind} gradient variance", s.get("variance"), s.get("variance_ci95")))
    elif command == "lnshift":
        rows += [(k, v, None) for k, v in record.get("summary", {}).items()]
    elif command == "patch":
        gap = record.get("gap", {})
        rows.append(("L_base - L_tuned", gap.get("value"), gap.get("ci95")))
        rows += [(f"answer accuracy, {k}", v, None) for k, v in (record.get("accuracy") or {}).items()]
        for unit in record.get("units", []):
            into = unit.get("into_base", {})
            f = into.get("recovered", {})
            rows.append((f"{unit.get('unit')} recovered into the base", f.get("value"), f.get("ci95")))
            if "accuracy" in into:
                rows.append((f"{unit.get('unit')} into the base: answer accuracy", into["accuracy"], None))
        for a in record.get("activations") or []:
            f = a.get("recovered", {})
            name = f"{a.get('unit')} output at {a.get('tokens')} tokens recovered into the base"
            rows.append((name, f.get("value"), f.get("ci95")))
    elif command == "attention":
        rows += _attention_rows(record)
    elif command == "linprobe":
        for best in record.get("summary", {}).values():
            where = f"layer {best.get('layer')} {best.get('site')}"
            chance = _fmt(best.get("chance"))
            name = f"{best.get('model')} {best.get('probe')}: best accuracy ({where}; chance {chance})"
            rows.append((name, best.get("accuracy"), best.get("ci95")))
    else:
        rows += [(k, v, None) for k, v in record.get("scores", {}).items() if isinstance(v, int | float)]
    out = ["| statistic | value | 95 % CI |", "|---|---|---|"]
    for name, value, ci in rows:
        shown = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "-"
        out.append(f"| {name} | {_fmt(value)} | {shown} |")
    return out


def _attention_rows(record: dict) -> list[tuple[str, object, object]]:
    """`lnprobe attention`: per model and per difference from the first, the mean share of text tokens'
    attention on image tokens over all layers and heads, then each layer's mean over heads."""
    rows: list[tuple[str, object, object]] = []
    entries = [(f"{k}: share on image tokens", m) for k, m in (record.get("models") or {}).items()]
    entries += [(f"{k}: difference", d) for k, d in (record.get("differences") or {}).items()]
    for name, entry in entries:
        mean = entry.get("mean", {})
        rows.append((f"{name}, mean over layers and heads", mean.get("value"), mean.get("ci95")))
        layer = entry.get("layer_mean", {})
        for i, (value, ci) in enumerate(zip(layer.get("value", []), layer.get("ci95", []), strict=False)):
            rows.append((f"{name}, layer {i}", value, ci))
    return rows
