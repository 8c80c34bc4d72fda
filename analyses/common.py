"""Shared by the figure scripts: argument parsing, finding result files, reading the paths they record,
writing PNG + HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from lnprobe.io import read_path, results_tree  # noqa: E402
from lnprobe.report.page import write_page  # noqa: E402


def parse(doc: str, extra=None) -> argparse.Namespace:
    """RESULTS_DIR and --out (plus what `extra(parser)` adds); a missing results directory exits 2."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("results", type=Path, help="a results directory (e.g. runs/demo)")
    parser.add_argument("--out", type=Path, default=Path("runs/figures"), help="where the figures go")
    if extra:
        extra(parser)
    args = parser.parse_args()
    if not args.results.is_dir():
        parser.exit(2, f"{parser.prog}: error: {args.results}: no such results directory\n")
    args.out.mkdir(parents=True, exist_ok=True)
    args.root = args.results if args.results.resolve() in args.out.resolve().parents else args.out
    return args


def find(results: Path, name: str) -> list[Path]:
    return sorted(results.rglob(name))


def need(paths: list, what: str, results: Path) -> None:
    if not paths:
        print(f"error: {results}: no {what} found (run `lnprobe demo` or the probe first)", file=sys.stderr)
        raise SystemExit(2)


def recorded(value: str, json_file: Path) -> Path:
    """A path `json_file` records: relative to its folder (an older file's: to where it was written from)."""
    return read_path(value, json_file.parent)


def save(fig, page, out: Path, stem: str, caption: str, root: Path | None = None) -> None:
    """`fig` (matplotlib) → STEM.png with the caption underneath; `page` (plotly) → STEM.html, loading the
    plotly.min.js at `root` (the results directory when OUT lies inside it, else OUT) by a relative path."""
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out / f"{stem}.png", dpi=150)
    plt.close(fig)
    page.update_layout(title=page.layout.title.text or stem)
    page.add_annotation(text=caption, showarrow=False, xref="paper", yref="paper", x=0.5, y=-0.18)
    with results_tree(root or out):
        write_page(page, out / f"{stem}.html")
    print(f"wrote {out / stem}.png and .html")


def label(path: Path, results: Path) -> str:
    """A short model label from a probe directory name (similarity-ln → ln)."""
    name = path.parent.name
    return name.split("-", 1)[1] if "-" in name else str(path.parent.relative_to(results))
