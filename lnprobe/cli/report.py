"""`lnprobe runs` and `lnprobe report`: browse results side by side, re-render a report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lnprobe.cli.core import app, console


@app.command("runs")
def runs_command(
    root: Annotated[Path, typer.Argument(help="A folder of lnprobe results (searched recursively).")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write index.html and runs.csv (default: ROOT/runs-index).")
    ] = None,
) -> None:
    """Index every run and probe result under ROOT: a sortable, filterable HTML table and a CSV. A saved file
    that cannot be read is left out with a warning on stderr and named in its row's `unreadable` column;
    the index is still written (exit 0)."""
    from lnprobe.report.runs import PAGE, TABLE, write_index

    written, rows = write_index(root, out, warn=_warn)
    console.print(f"{rows} results; wrote {written / PAGE} and {written / TABLE}")


def _warn(line: str) -> None:
    print(f"lnprobe: warning: {line}", file=sys.stderr)


@app.command("report")
def report_command(
    path: Annotated[
        Path, typer.Argument(help="A claims, demo, study, similarity, gradvar, lnshift or eval folder.")
    ],
) -> None:
    """Re-render a result folder's report (Markdown + self-contained HTML) from its saved JSON; no model
    is loaded."""
    from lnprobe.report.rerender import rerender

    for written in rerender(path):
        console.print(f"wrote {written}")
