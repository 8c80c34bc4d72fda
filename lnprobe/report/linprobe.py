"""Figures of `lnprobe linprobe`, drawn from its saved results:

linprobe.png / .html          probe accuracy against the decoder layer, one panel per probe, one line
                              per model and site (before / after the input norm), 95 % interval bands,
                              chance (or the majority-class share) dashed
linprobe_pca_<model>.html     2-D PCA of image and text tokens before and after the input norm, one
                              layer at a time, chosen with a slider
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from lnprobe.report.page import write_page  # noqa: E402

SITE_NAMES = {"in": "before the norm", "out": "after the norm"}


def _curves(record: dict) -> dict[str, dict[tuple[str, str], dict[str, list]]]:
    """{probe: {(model, site): {layer, acc, lo, hi, chance}}}, layers ascending."""
    out: dict[str, dict] = {}
    for r in sorted(record["results"], key=lambda r: r["layer"]):
        c = out.setdefault(r["probe"], {}).setdefault((r["model"], r["site"]), {})
        for key, value in (("layer", r["layer"]), ("acc", r["accuracy"]), ("lo", r["ci95"][0]),
                           ("hi", r["ci95"][1]), ("chance", r["chance"])):  # fmt: skip
            c.setdefault(key, []).append(value)
    return out


def safe_name(label: str) -> str:
    return re.sub(r"[^\w.-]", "_", label)


def accuracy_png(record: dict, out: Path) -> Path:
    curves = _curves(record)
    fig, axes = plt.subplots(1, len(curves), figsize=(4.8 * len(curves), 4), squeeze=False)
    for ax, (probe, lines) in zip(axes[0], curves.items(), strict=True):
        for (model, site), c in lines.items():
            (line,) = ax.plot(c["layer"], c["acc"], marker="o", ls="-" if site == "in" else "--",
                              label=f"{model}, {SITE_NAMES[site]}")  # fmt: skip
            ax.fill_between(c["layer"], c["lo"], c["hi"], color=line.get_color(), alpha=0.15)
        chance = next(iter(lines.values()))["chance"]
        ax.plot(next(iter(lines.values()))["layer"], chance, color="grey", ls=":", label="chance / majority")
        ax.set(xlabel="decoder layer", ylabel="cross-validated accuracy", title=probe, ylim=(0, 1.02))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.suptitle(f"linear probes ({record['examples']} examples, 95 % Wilson intervals)", fontsize=9)
    fig.tight_layout()
    png = out / "linprobe.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def accuracy_html(record: dict, out: Path) -> Path:
    curves = _curves(record)
    page = make_subplots(rows=1, cols=len(curves), subplot_titles=list(curves))
    for col, lines in enumerate(curves.values(), 1):
        for (model, site), c in lines.items():
            lo = [a - b for a, b in zip(c["acc"], c["lo"], strict=True)]
            hi = [b - a for a, b in zip(c["acc"], c["hi"], strict=True)]
            error = {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}
            page.add_trace(go.Scatter(x=c["layer"], y=c["acc"], error_y=error, mode="lines+markers",
                                      name=f"{model}, {SITE_NAMES[site]}"), row=1, col=col)  # fmt: skip
    page.update_xaxes(title_text="decoder layer")
    page.update_yaxes(title_text="accuracy", range=[0, 1.02])
    return write_page(page.update_layout(title="linear probes, 95 % Wilson intervals"), out / "linprobe.html")


def pca_html(label: str, views: dict, out: Path) -> Path:
    """One model's PCA views: a slider over layers; panels before / after the norm."""
    sites = [s for s in ("in", "out") if s in views]
    layers = sorted({int(k) for s in sites for k in views[s]})
    titles = [SITE_NAMES[s] for s in sites]
    page = make_subplots(rows=1, cols=len(sites), subplot_titles=titles)
    per_layer = 2 * len(sites)
    for layer in layers:
        for col, site in enumerate(sites, 1):
            view = views[site][str(layer)] if str(layer) in views[site] else views[site][layer]
            for kind, colour in (("image", "#d62728"), ("text", "#1f77b4")):
                xy = view[kind]
                page.add_trace(
                    go.Scatter(
                        x=[p[0] for p in xy],
                        y=[p[1] for p in xy],
                        mode="markers",
                        name=kind,
                        marker={"size": 4, "color": colour, "opacity": 0.6},
                        visible=layer == layers[0],
                        showlegend=col == 1,
                    ),  # fmt: skip
                    row=1,
                    col=col,
                )
    steps = []
    for i, layer in enumerate(layers):
        visible = [i * per_layer <= t < (i + 1) * per_layer for t in range(per_layer * len(layers))]
        steps.append({"method": "update", "label": str(layer), "args": [{"visible": visible}]})
    page.update_layout(
        title=f"{label}: PCA of image and text tokens at each input norm",
        sliders=[{"active": 0, "currentvalue": {"prefix": "decoder layer "}, "steps": steps}],
    )
    page.update_xaxes(title_text="PC 1")
    page.update_yaxes(title_text="PC 2")
    return write_page(page, out / f"linprobe_pca_{safe_name(label)}.html")


def linprobe_figures(record: dict, views: dict, out: Path) -> list[Path]:
    """Every figure of a linprobe result into `out`."""
    files = [accuracy_png(record, out), accuracy_html(record, out)]
    return files + [pca_html(label, v, out) for label, v in views.items()]
