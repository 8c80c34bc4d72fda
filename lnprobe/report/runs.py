"""`lnprobe runs DIR`: one table of every run and probe result under DIR, as a self-contained HTML page
(sortable and filterable in the browser, no network at view time) and a CSV that pandas reads.

Every folder lnprobe writes carries a marker naming its command (`lnprobe.io.MARKER`); the index reads
each marked folder's own saved JSON, loads no model, and makes one row per result:

    train       regime, lr, seed, steps, final / held-out loss (result.json, lnprobe_config.json); in a
                miniature's sweep also its validation answer accuracy; `weights: removed` when a
                miniature deleted its weights (lnprobe.miniature.prune)
    similarity  checkpoint(s), tokens, each metric's cross-layer (or diagonal) mean and its 95 % interval
    gradvar     checkpoint, norm-gradient variance pooled over norms
    lnshift     checkpoints, norm tensors changed, mean relative change
    patch       checkpoints, the norm recovering most of the tuning's loss gain (patched into the base)
    linprobe    one row per model: its best image-vs-text and attribute probe accuracies (layer, site)
    forgetting  checkpoints, text loss before / after, its change with the 95 % interval
    attention   one row per model: its label and mean share of text tokens' attention on image tokens
    claims      each claim's verdict
    eval        benchmark and its scores
    demo        one row per regime of the miniature (accuracy, trainable %, cross-layer CKA)

Other marked folders (data, sweep, assemble, ...) get a row with their command and time only. Paths in the
table are relative to DIR and each row links the folder's report or figure when it has one.

A train row of an unfinished run (killed or still running: no result.json yet) takes `steps` and
`last_loss` from the last line of its metrics.jsonl. Every file is checked as it is read
(`lnprobe.report.saved`): one that cannot be read (non-UTF-8, malformed, truncated, a field of the wrong
kind) is left out, reported through `warn` (one line naming the file and why) and named in its row's
`unreadable` column; the index is still written. A folder whose marker cannot be read is left out, with a
warning too.
"""

from __future__ import annotations

import csv
import html
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lnprobe.errors import InputError
from lnprobe.io import MARKER, WEIGHTS_REMOVED, Output
from lnprobe.report.saved import ANY_OBJECT, RESULTS, read_saved, read_saved_lines

COMMAND = "runs"
PAGE, TABLE = "index.html", "runs.csv"
LINKS = ("report.html", "similarity_cka.html", "lnshift.html", "patch.html", "attention.html", "gradvar.html",
         "accuracy.html", "linprobe.html")  # fmt: skip
FIRST = ("path", "command", "regime", "lr", "seed", "steps", "accuracy", "eval_loss", "final_loss")


def marked_folders(root: Path, warn: Callable[[str], None] = lambda _: None) -> Iterator[tuple[Path, dict]]:
    """(folder, marker record) of every folder under `root` (itself included) that lnprobe wrote, in path
    order; checkpoints inside training runs and earlier indexes are skipped, and a folder whose marker
    cannot be read is skipped after a `warn`ing."""
    for marker in sorted(root.rglob(MARKER)):
        folder = marker.parent
        if "checkpoints" in folder.relative_to(root).parts:
            continue
        try:
            record = read_saved(marker, MARKER_SHAPE)
        except InputError as exc:
            warn(f"{exc}; {folder} is left out of the index")
            continue
        if record.get("command") and record["command"] != COMMAND:
            yield folder, record


MARKER_SHAPE = {"command?": (str, None)}
LOG_LINE = {"step": int, "loss?": (float, None)}  # a line of a training run's metrics.jsonl


class Reads:
    """Reads the saved files of one folder's rows, each checked against its shape: a missing file reads as
    empty ({}, or [] for JSON lines: an unfinished run has no result.json yet), and so does an unreadable
    one, noted in `unreadable` as (path, what is wrong)."""

    def __init__(self) -> None:
        self.unreadable: list[tuple[Path, str]] = []

    def __call__(self, path: Path, shape: Any = ANY_OBJECT) -> Any:
        lines = path.suffix == ".jsonl"
        if not path.exists():
            return [] if lines else {}
        try:
            return read_saved_lines(path, shape) if lines else read_saved(path, shape)
        except InputError as exc:
            self.unreadable.append((path, str(exc)))
            return [] if lines else {}


def _train(folder: Path, read: Reads) -> list[dict]:
    config = read(folder / "lnprobe_config.json", {"config?": ANY_OBJECT}).get("config", {})
    result = read(folder / "result.json")
    row = {k: config.get(k) for k in ("regime", "lr", "seed", "batch_size", "model", "data")}
    row.update(
        {k: result.get(k) for k in ("steps", "final_loss", "eval_loss", "best_eval_loss", "eval_accuracy")}
    )
    if not result:  # unfinished (or its result.json unreadable): how far its log got
        row.update(_logged(read(folder / "metrics.jsonl", LOG_LINE)))
    picked = read(folder.parent.parent / "val_accuracy.json")  # a miniature sweep's run
    row["val_accuracy"] = picked.get(f"{folder.parent.name}/{folder.name}")
    row["weights"] = "removed" if _weights_removed(folder) else None
    return [row]


def _weights_removed(run: Path) -> bool:
    """Whether the run's newest checkpoint lost its weights to a miniature (its WEIGHTS_REMOVED note)."""
    try:
        name = (run / "latest").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(name) and (run / "checkpoints" / name / WEIGHTS_REMOVED).is_file()


def _logged(lines: list[dict]) -> dict:
    """`steps` and `last_loss` of an unfinished run: its last logged step and training loss."""
    losses = [line for line in lines if line.get("loss") is not None]
    last = lines[-1]["step"] if lines else None
    return {"steps": last, "last_loss": losses[-1]["loss"] if losses else None}


def _interval(ci: list | None) -> str | None:
    lo, hi = ci or (None, None)
    return None if lo is None or hi is None else f"[{lo:.4f}, {hi:.4f}]"


def _saved(command: str) -> Callable[[Path, Reads], dict]:
    """The reader of a probe's or benchmark's saved result (`saved.RESULTS`)."""
    name, shape = RESULTS[command]
    return lambda folder, read: read(folder / name, shape)


def _similarity(folder: Path, read: Reads) -> list[dict]:
    data = _saved("similarity")(folder, read)
    config = data.get("config", {})
    row = {"model": config.get("a"), "model_b": config.get("b"), "tokens": config.get("tokens")}
    for name, entry in data.get("metrics", {}).items():
        summary = entry.get("cross_layer_mean") or entry.get("diagonal_mean") or {}
        row[name] = summary.get("value")
        row[f"{name}_ci95"] = _interval(summary.get("ci95"))
    return [row]


def _gradvar(folder: Path, read: Reads) -> list[dict]:
    data = _saved("gradvar")(folder, read)
    norms = data.get("kinds", {}).get("norms", {})
    return [{"model": data.get("config", {}).get("ckpt"), "norm_grad_variance": norms.get("variance")}]


def _lnshift(folder: Path, read: Reads) -> list[dict]:
    data = _saved("lnshift")(folder, read)
    config, summary = data.get("config", {}), data.get("summary", {})
    return [
        {
            "model": config.get("ckpt"),
            "model_b": config.get("base"),
            "norms_changed": summary.get("changed"),
            "mean_rel_l2_changed": summary.get("mean_rel_l2_changed"),
        }
    ]


def _patch(folder: Path, read: Reads) -> list[dict]:
    data = _saved("patch")(folder, read)
    config, summary = data.get("config", {}), data.get("summary", {})
    return [
        {
            "model": config.get("tuned"),
            "model_b": config.get("base"),
            "best_unit": summary.get("best_unit"),
            "best_recovered": summary.get("best_recovered"),
            "accuracy": (data.get("accuracy") or {}).get("tuned"),
        }
    ]


def _attention(folder: Path, read: Reads) -> list[dict]:
    data = _saved("attention")(folder, read)
    rows = []
    for label, m in (data.get("models") or {}).items():
        mean = m.get("mean") or {}
        rows.append({"model": m.get("path"), "label": label, "image_attention": mean.get("value"),
                     "image_attention_ci95": _interval(mean.get("ci95"))})  # fmt: skip
    return rows


def _linprobe(folder: Path, read: Reads) -> list[dict]:
    data = _saved("linprobe")(folder, read)
    specs = dict(m.partition("=")[::2] for m in data.get("config", {}).get("models", []))
    rows: dict[str, dict] = {}
    for best in data.get("summary", {}).values():
        label = best.get("model")
        row = rows.setdefault(label, {"label": label, "model": specs.get(label)})
        row[best.get("probe")] = best.get("accuracy")
        row[f"{best.get('probe')}_at"] = f"layer {best.get('layer')} {best.get('site')}"
    return list(rows.values())


def _forgetting(folder: Path, read: Reads) -> list[dict]:
    data = _saved("forgetting")(folder, read)
    config, summary = data.get("config", {}), data.get("summary", {})
    change = summary.get("loss_change") or {}
    row = {"model": config.get("tuned"), "model_b": config.get("base"), "text_loss_before":
           summary.get("loss_before"), "text_loss_after": summary.get("loss_after")}  # fmt: skip
    return [
        {
            **row,
            "text_loss_change": change.get("value"),
            "text_loss_change_ci95": _interval(change.get("ci95")),
        }
    ]


def _claims(folder: Path, read: Reads) -> list[dict]:
    data = read(folder / "claims.json", {"claims?": [ANY_OBJECT]})
    return [{f"claim:{c.get('id')}": c.get("verdict") for c in data.get("claims", [])}]


def _eval(folder: Path, read: Reads) -> list[dict]:
    data = _saved("eval")(folder, read)
    config = data.get("config", {})
    scores = {k: v for k, v in data.get("scores", {}).items() if isinstance(v, int | float)}
    return [{"model": config.get("ckpt"), "bench": config.get("bench"), **scores}]


def _demo(folder: Path, read: Reads) -> list[dict]:
    data = read(folder / "results.json", {"config?": ANY_OBJECT, "rows?": [ANY_OBJECT]})
    rows = []
    for r in data.get("rows", []):
        keep = ("regime", "lr", "trainable_pct", "accuracy", "val_accuracy", "cross_layer_cka")
        rows.append({**{k: r.get(k) for k in keep}, "seed": data.get("config", {}).get("seed")})
    return rows


READERS: dict[str, Callable[[Path, Reads], list[dict]]] = {
    "train": _train,
    "similarity": _similarity,
    "gradvar": _gradvar,
    "lnshift": _lnshift,
    "patch": _patch,
    "attention": _attention,
    "linprobe": _linprobe,
    "forgetting": _forgetting,
    "claims": _claims,
    "eval": _eval,
    "demo": _demo,
}


def collect(root: Path, warn: Callable[[str], None] = lambda _: None) -> list[dict]:
    """The index's rows (see the module docstring); `warn` gets one line per file that could not be read."""
    rows = []
    for folder, marker in marked_folders(root, warn):
        rows += _rows(root, folder, marker, warn)
    return rows


def _rows(root: Path, folder: Path, marker: dict, warn: Callable[[str], None]) -> list[dict]:
    """The rows of one marked folder; its unreadable files named in their `unreadable` column."""
    command, read = marker["command"], Reads()
    where = folder.relative_to(root).as_posix() or "."
    link = next((f"{where}/{name}" for name in LINKS if (folder / name).is_file()), None)
    base = {"path": where, "command": command, "time_utc": marker.get("time_utc"), "link": link}
    found = READERS.get(command, lambda *_: [{}])(folder, read) or [{}]
    for _, why in read.unreadable:
        warn(f"{why}; the index's row {where} lacks what it holds")
    if read.unreadable:
        base["unreadable"] = ", ".join(os.path.relpath(path, folder) for path, _ in read.unreadable)
    return [{**base, **_visible(row, folder, root)} for row in found]


def _visible(row: dict, folder: Path, root: Path) -> dict:
    """A row's known values, its paths as the table shows them."""
    return {k: _shown(v, folder, root) if k in PATHS else v for k, v in row.items() if v is not None}


PATHS = ("model", "model_b", "data")  # recorded relative to their JSON file's folder, or absolute


def _shown(value, folder: Path, root: Path):
    """A recorded path as the table shows it: relative to ROOT when it lies there, else as recorded."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value) if Path(value).is_absolute() else folder / value
    if path.exists():
        rel = Path(os.path.relpath(path.resolve(), root.resolve()))
        return rel.as_posix() if not rel.as_posix().startswith("..") else str(path.resolve())
    return value


def columns(rows: list[dict]) -> list[str]:
    seen = dict.fromkeys(c for c in FIRST if any(c in r for r in rows))
    for r in rows:
        seen.update(dict.fromkeys(k for k in r if k != "link"))
    return list(seen)


def write_index(
    root: str | Path, out: str | Path | None = None, warn: Callable[[str], None] = lambda _: None
) -> tuple[Path, int]:
    """Write OUT/index.html and OUT/runs.csv for the results under `root` (OUT defaults to ROOT/runs-index,
    replaced on a re-run since lnprobe wrote it); returns OUT and the number of rows. Files that cannot be
    read are left out, named in their row's `unreadable` column and, once the index is written, `warn`ed
    about one line each (an index not written is one error line alone)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    warnings: list[str] = []
    rows = collect(root, warnings.append)
    if not rows:
        raise InputError(f"{root}: holds no lnprobe results (no folder with a {MARKER} marker)")
    out = Path(out) if out else root / "runs-index"
    cols = columns(rows)
    with Output(out, COMMAND, force=True).build() as tmp:
        with (tmp / TABLE).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        (tmp / PAGE).write_text(page(rows, cols, root, out))
    for line in warnings:
        warn(line)
    return out, len(rows)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def page(rows: list[dict], cols: list[str], root: Path, out: Path) -> str:
    """The HTML table: click a header to sort, type in the box to filter rows; links relative to OUT."""
    up = Path(os.path.relpath(root, out)).as_posix()
    head = "".join(f"<th onclick='sortBy({i})'>{html.escape(c)}</th>" for i, c in enumerate(cols))
    body = []
    for r in rows:
        cells = []
        for c in cols:
            text = _cell(r.get(c))
            if c == "path" and r.get("link"):
                text = f"<a href='{html.escape(up + '/' + r['link'])}'>{text}</a>"
            sort = r.get(c) if isinstance(r.get(c), int | float) else ""
            cells.append(f"<td data-v='{sort}'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return TEMPLATE.format(
        title=html.escape(f"lnprobe runs: {root}"), n=len(rows), head=head, body="\n".join(body)
    )


TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }}
th {{ background: #eef; cursor: pointer; position: sticky; top: 0; }}
td:first-child, th:first-child {{ text-align: left; }}
tr:nth-child(even) {{ background: #f8f8f8; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{n} results. Click a column header to sort; type to filter.
<input id="filter" placeholder="filter rows" oninput="filterRows(this.value)"></p>
<table id="runs"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<script>
let order = [];
function sortBy(col) {{
  const body = document.querySelector("#runs tbody");
  const rows = Array.from(body.rows);
  order[col] = !order[col];
  const key = r => {{
    const c = r.cells[col];
    return c.dataset.v !== "" ? parseFloat(c.dataset.v) : c.textContent;
  }};
  rows.sort((a, b) => {{
    const x = key(a), y = key(b);
    const cmp = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return order[col] ? cmp : -cmp;
  }});
  rows.forEach(r => body.appendChild(r));
}}
function filterRows(text) {{
  const t = text.toLowerCase();
  for (const r of document.querySelectorAll("#runs tbody tr")) {{
    r.style.display = r.textContent.toLowerCase().includes(t) ? "" : "none";
  }}
}}
</script>
</body></html>
"""
