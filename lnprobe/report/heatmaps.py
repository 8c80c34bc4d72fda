"""Layer x layer similarity heatmaps: PNG (seaborn) and interactive HTML (plotly), one per metric, with a
shared colour scale per metric family (CKA in [0, 1], cosine in [-1, 1]). The HTML files load the results
tree's one plotly.min.js (`lnprobe.report.page`), so they open offline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import seaborn as sns  # noqa: E402

from lnprobe.report.page import write_page  # noqa: E402


def _labels(record: dict) -> tuple[str, str]:
    cfg = record["config"]
    return cfg["a"], cfg["b"] or cfg["a"]


def similarity_figures(record: dict, out: Path) -> list[Path]:
    written = []
    a, b = _labels(record)
    for metric, entry in record["metrics"].items():
        m = np.array(entry["matrix"], dtype=float)
        lo, hi = (-1.0, 1.0) if metric == "cosine" else (0.0, 1.0)
        title = f"{metric}: {Path(a).name} x {Path(b).name} ({record['config']['tokens']} tokens)"
        summary = entry.get("cross_layer_mean") or entry.get("diagonal_mean")
        if summary:
            ci = summary["ci95"]
            ci_text = f", 95% CI [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else ""
            which = "off-diagonal" if "cross_layer_mean" in entry else "diagonal"
            title += f"\nmean {which} {summary['value']:.3f}{ci_text}"
        fig, ax = plt.subplots(figsize=(6.4, 5.2))
        sns.heatmap(
            m,
            vmin=lo,
            vmax=hi,
            cmap="viridis",
            square=True,
            ax=ax,
            xticklabels=record["sites_b"],
            yticklabels=record["sites_a"],
            cbar_kws={"label": metric},
        )
        ax.set_xlabel(f"{Path(b).name}: site")
        ax.set_ylabel(f"{Path(a).name}: site")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        png = out / f"similarity_{metric}.png"
        fig.savefig(png, dpi=120)
        plt.close(fig)
        html = out / f"similarity_{metric}.html"
        page = go.Figure(
            go.Heatmap(
                z=m,
                x=record["sites_b"],
                y=record["sites_a"],
                zmin=lo,
                zmax=hi,
                colorscale="Viridis",
                colorbar={"title": metric},
            )
        )
        write_page(
            page.update_layout(title=title.replace("\n", "<br>"), yaxis={"autorange": "reversed"}), html
        )
        written += [png, html]
    return written
