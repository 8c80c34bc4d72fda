"""`lnprobe runs`: browse results side by side."""

from __future__ import annotations

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
    """Index every run and probe result under ROOT: a sortable, filterable HTML table and a CSV."""
    from lnprobe.report.runs import PAGE, TABLE, collect, write_index

    written = write_index(root, out)
    console.print(f"{len(collect(root))} results; wrote {written / PAGE} and {written / TABLE}")
