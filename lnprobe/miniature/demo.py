"""The embedded default experiment (`make demo`, `lnprobe demo`): the paper's pipeline in miniature, on CPU,
with no download (see lnprobe.miniature.pipeline for the stages).

Writes OUT/results.json (the table, goals, verdicts, stage timings), OUT/demo_results.json (the rows, for
the figure scripts), the claims report under OUT/claims and the paper-scale parameter counts. Paths in them
are relative to the file's folder (inside OUT) or absolute, and every HTML figure loads OUT/plotly.min.js:
OUT can be moved or copied. Seeded
throughout: two runs give the same numbers; a second run into the same OUT reuses what the first wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from lnprobe.io import claim_dir
from lnprobe.miniature.config import MiniatureConfig
from lnprobe.miniature.pipeline import run_miniature
from lnprobe.miniature.table import print_results, saved_rows


def run_demo(out: Path, config: MiniatureConfig | None = None, console: Console | None = None) -> dict:
    console = console or Console()
    config = config or MiniatureConfig()
    out = Path(out)
    claim_dir(out, "demo")
    record = run_miniature(out, config, progress=console.is_terminal)
    rows = saved_rows(record["rows"], out)  # checkpoints relative to OUT: the folder can be moved or copied
    (out / "demo_results.json").write_text(json.dumps(rows, indent=2) + "\n")
    _paper_params(out)
    print_results(
        record, console, f"paper miniature (seed {config.seed}): tiny LLaVA on the synthetic shapes"
    )
    console.print(
        f"report: {out / 'claims' / 'report.html'} (and report.md); results: {out / 'results.json'}"
    )
    return record


def _paper_params(out: Path) -> None:
    """Trainable parameters and memory estimate of every regime at the paper's LLaVA-7B shapes (meta device,
    no weights), for `analyses/fig_params_memory.py`."""
    from lnprobe.models import build_from_config, resolve_config
    from lnprobe.params import regime_report
    from lnprobe.regimes import REGIMES

    path = out / "params_llava-7b.json"
    if not path.is_file():
        config = resolve_config("llava-7b")
        rows = [regime_report(build_from_config(config), r).as_dict() for r in REGIMES.names()]
        path.write_text(json.dumps({"model": "llava-7b", "regimes": rows}, indent=2) + "\n")
