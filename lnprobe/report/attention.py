"""Figures of `lnprobe attention`: per model a layers x heads heatmap of the share of text tokens' attention
on image tokens (one shared scale from 0), and per difference from the first model a heatmap on a diverging
scale centred at 0; cells carry their values up to 12 x 12. PNG (matplotlib / seaborn) and HTML (plotly,
`lnprobe.report.page`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import seaborn as sns  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from lnprobe.report.heatmaps import ANNOTATE  # noqa: E402
from lnprobe.report.page import write_page  # noqa: E402


def panels(record: dict) -> list[tuple[str, np.ndarray, float, float, bool]]:
    """(title, [layers, heads] matrix, colour-scale low, high, diverging) per model, then per difference."""
    shares = {k: np.array(m["share"]["value"], dtype=float) for k, m in record["models"].items()}
    top = max(float(m.max()) for m in shares.values()) or 1.0
    out = [
        (f"{k} (mean {record['models'][k]['mean']['value']:.3f})", m, 0.0, top, False)
        for k, m in shares.items()
    ]
    for name, d in record["differences"].items():
        m = np.array(d["share"]["value"], dtype=float)
        bound = float(np.abs(m).max()) or 1.0
        out.append((f"{name} (mean {d['mean']['value']:+.3f})", m, -bound, bound, True))
    return out


def attention_figures(record: dict, out: Path) -> list[Path]:
    """OUT/attention.png and OUT/attention.html."""
    items = panels(record)
    annotate = record["layers"] <= ANNOTATE and record["heads"] <= ANNOTATE
    title = f"share of text-token attention on image tokens ({record['examples']} examples)"
    heads = list(range(record["heads"]))
    fig, axes = plt.subplots(
        1, len(items), figsize=(4.2 * len(items), 0.35 * record["layers"] + 2.4), squeeze=False
    )
    for ax, (name, m, lo, hi, diverging) in zip(axes[0], items, strict=True):
        sns.heatmap(
            m, vmin=lo, vmax=hi, center=0.0 if diverging else None, cmap="RdBu_r" if diverging else "viridis",
            ax=ax, annot=annotate, fmt=".2f", annot_kws={"fontsize": 7}, xticklabels=heads,
            cbar_kws={"label": "difference" if diverging else "share"},
        )  # fmt: skip
        ax.set(xlabel="head", ylabel="decoder layer", title=name)
        ax.title.set_fontsize(9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = out / "attention.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    page = make_subplots(rows=1, cols=len(items), subplot_titles=[name for name, *_ in items])
    text = {"texttemplate": "%{z:.2f}"} if annotate else {}
    for col, (_, m, lo, hi, diverging) in enumerate(items, 1):
        bar = {"x": col / len(items) + 0.005, "len": 0.9, "thickness": 10}
        trace = go.Heatmap(
            z=m, x=heads, zmin=lo, zmax=hi, colorscale="RdBu_r" if diverging else "Viridis", colorbar=bar,
            hovertemplate="layer %{y}, head %{x}: %{z:.4f}<extra></extra>", **text,
        )  # fmt: skip
        page.add_trace(trace, row=1, col=col)
    page.update_xaxes(title_text="head")
    page.update_yaxes(title_text="decoder layer", autorange="reversed")
    html = out / "attention.html"
    write_page(page.update_layout(title=title), html)
    return [png, html]
