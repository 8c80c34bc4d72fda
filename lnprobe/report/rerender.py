"""`lnprobe report PATH`: re-render a result folder's report from its saved JSON, with no model loaded.

    claims      report.md / report.html from claims.json (as `lnprobe claims` writes them)
    demo        its claims report (PATH/claims)
    study       study.md / study.html from study.json
    similarity, gradvar, lnshift, patch, attention, linprobe, eval
                report.md / report.html: the configuration, the headline numbers, every figure in the
                folder and the provenance

The folder must be one lnprobe wrote (its marker names the command); only the report files are replaced.
The saved JSON is checked against the shape of every field the report uses (`lnprobe.report.saved`; the
claims and study shapes below) before anything is written: a file that does not fit is named with what is
wrong, and nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lnprobe.errors import InputError
from lnprobe.io import MARKER, marker_command
from lnprobe.report.markdown import provenance_lines, write_pages
from lnprobe.report.saved import ANY_OBJECT, NUM, RESULTS, SUMMARY, read_saved
from lnprobe.textio import Array

RESULT_FILES = {command: name for command, (name, _) in RESULTS.items()}


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

        write_report(_read(path / "claims.json", CLAIMS), path)
        return [path / "report.md", path / "report.html"]
    if command == "study":
        from lnprobe.miniature.study import markdown

        study = _read(path / "study.json", study_shape())
        return list(write_pages(markdown(study), path, "lnprobe study", stem="study"))
    if command in RESULTS:
        name, shape = RESULTS[command]
        record = _read(path / name, shape)
        return list(write_pages(probe_markdown(command, record, path), path, f"lnprobe {command}"))
    raise InputError(f"{path}: `lnprobe {command}` writes no report (reports: claims, demo, study, "
                     f"{', '.join(RESULT_FILES)})")  # fmt: skip


def _read(path: Path, shape: Any) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: missing (the report is rendered from it)")
    return read_saved(path, shape)


# -- the claims report's fields (lnprobe.claims.report, lnprobe.claims.causal) -----------------------------
PAIR = (None, Array(object, 2))
TEST = {"verdict": object, "reason": object, "statistic": object, "ci95": PAIR, "p_value": object}
STAT = {"value": object, "ci95": PAIR}
DECIDING = {  # a claim's deciding test (lnprobe.claims.inference.Verdict)
    **TEST,
    "statistic": NUM,
    "delta": NUM,
    "ci90?": PAIR,
    "p_equivalence?": NUM,
    "p_permutation?": NUM,
    "units?": (int, None),
    "unit?": (str, None),
    "mde?": NUM,
    "units_for_delta?": (int, None),
    "units_for_estimate?": (int, None),
}
PER_SEED = {"ln": object, "reference": object, "difference": NUM, "ci95?": PAIR, "verdict?": object}
PER_SITE = {str: {"log_ratio": NUM, "ci95": PAIR, "seeds?": object}}
NUMBERS = {  # a claim's numbers by its id; other claims' are shown as they are
    "cross_layer_similarity": {
        str: {"cka": STAT, "cosine": STAT, "cka_null?": {"mean": NUM, "p95": NUM, "p": NUM}}
    },
    "gradient_variance": {str: {"ci95": PAIR}},
}
PICK = (None, {"unit": object, "recovered": SUMMARY})
CAUSAL = {
    "gap": {**SUMMARY, "value": NUM},
    "examples": object,
    "decoder_norms": (None, {"recovered": SUMMARY}),
    "best_norm": PICK,
    "best_output_by_tokens": {str: PICK},
    "accuracy?": (None, {"base": NUM, "tuned": NUM}),
}


def _claim(claim: Any) -> dict:
    numbers = NUMBERS.get(claim.get("id"), ANY_OBJECT) if isinstance(claim, dict) else ANY_OBJECT
    return {
        "id": str,
        "statement": object,
        "definition": object,
        "numbers": numbers,
        "tests": {str: (TEST, str, float, bool, None, [object])},
        "verdict": object,
        "test?": DECIDING,
        "margin?": {"delta": NUM, "reason": object},
        "per_seed?": [PER_SEED],
        "per_site?": PER_SITE,
        "pairing?": (str, None),
        "causal?": (None, {str: CAUSAL}),
    }


CLAIMS = {"models": ANY_OBJECT, "claims": [_claim], "caveats": [object], "provenance": ANY_OBJECT}


def study_shape() -> dict:
    """The fields of study.json that `lnprobe.miniature.study.markdown` uses."""
    from lnprobe.miniature.table import GOALS

    goal = {"per_seed": [object], "all": object}
    verdict = {"verdict": object, "per_seed": [str], "differences": [NUM], "test": DECIDING,
               "per_site?": PER_SITE}  # fmt: skip
    accuracy = {
        "value": float,
        "trainable_pct": NUM,
        "ci95": (None, Array(float, 2), Array(None, 2)),
        "per_seed": [float],
        "lr": (Array(float, at_least=1), Array(None, at_least=1)),
    }
    return {
        "seeds": [object],
        "config": ANY_OBJECT,
        "accuracy": {str: accuracy},
        "goals": {frozenset(GOALS): goal, "above_blind": goal},
        "claims": {str: verdict},
        "regime_verdicts": {str: {str: verdict}},
    }


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
    elif command == "forgetting":
        rows += _forgetting_rows(record.get("summary", {}))
    else:
        rows += [(k, v, None) for k, v in record.get("scores", {}).items() if isinstance(v, int | float)]
    out = ["| statistic | value | 95 % CI |", "|---|---|---|"]
    for name, value, ci in rows:
        shown = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "-"
        out.append(f"| {name} | {_fmt(value)} | {shown} |")
    return out


def _forgetting_rows(summary: dict) -> list[tuple[str, object, object]]:
    """`lnprobe forgetting`: text loss and next-token accuracy before and after, and their changes."""
    rows: list[tuple[str, object, object]] = []
    for name, key in (("text loss (nats/token)", "loss"), ("next-token accuracy", "accuracy")):
        change = summary.get(f"{key}_change") or {}
        rows += [(f"{name}, base", summary.get(f"{key}_before"), None),
                 (f"{name}, tuned", summary.get(f"{key}_after"), None),
                 (f"{name}, change (tuned - base)", change.get("value"), change.get("ci95"))]  # fmt: skip
    ratio = summary.get("perplexity_ratio") or {}
    rows.append(("perplexity ratio (tuned / base)", ratio.get("value"), ratio.get("ci95")))
    return rows


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
