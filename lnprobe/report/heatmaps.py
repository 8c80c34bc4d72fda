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

ANNOTATE = 12  # cells carry their values up to this many rows and columns


def checkpoint_label(spec: str) -> str:
    """A short name for a checkpoint in titles: `ln/lr0.01-seed0 step 200` for a training run's
    checkpoint (`<regime>/<run>/checkpoints/step-N`), else the folder name (or the hub id / preset)."""
    path = Path(spec)
    if path.parent.name == "checkpoints" and path.name.startswith("step-"):
        run = path.parent.parent
        return f"{run.parent.name}/{run.name} step {int(path.name[5:])}"
    return path.name or str(spec)


def labels(record: dict) -> tuple[str, str]:
    """The names of the two sides: `label_a` / `label_b` when given (claims names its models), else from
    the checkpoints."""
    cfg = record["config"]
    a = cfg.get("label_a") or checkpoint_label(cfg["a"])
    b = cfg.get("label_b") or (checkpoint_label(cfg["b"]) if cfg.get("b") else a)
    return a, b


def _heatmap_png(m, lo, hi, cmap, xs, ys, names, title, png: Path, center=None) -> None:
    small = max(m.shape) <= ANNOTATE
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    sns.heatmap(
        m, vmin=lo, vmax=hi, center=center, cmap=cmap, square=True, ax=ax, xticklabels=xs, yticklabels=ys,
        annot=small, fmt=".2f", annot_kws={"fontsize": 7}, cbar_kws={"label": names[2]},
    )  # fmt: skip
    ax.set_xlabel(f"{names[1]}: site")
    ax.set_ylabel(f"{names[0]}: site")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def _heatmap_html(m, lo, hi, scale, xs, ys, metric, title, html: Path) -> None:
    text = {"texttemplate": "%{z:.2f}"} if max(m.shape) <= ANNOTATE else {}
    page = go.Figure(
        go.Heatmap(z=m, x=xs, y=ys, zmin=lo, zmax=hi, colorscale=scale, colorbar={"title": metric}, **text)
    )
    write_page(page.update_layout(title=title.replace("\n", "<br>"), yaxis={"autorange": "reversed"}), html)


def similarity_figures(record: dict, out: Path) -> list[Path]:
    written = []
    a, b = labels(record)
    for metric, entry in record["metrics"].items():
        m = np.array(entry["matrix"], dtype=float)
        lo, hi = (-1.0, 1.0) if metric == "cosine" else (0.0, 1.0)
        title = f"{metric}: {a} x {b} ({record['config']['tokens']} tokens)"
        summary = entry.get("cross_layer_mean") or entry.get("diagonal_mean")
        if summary:
            ci = summary["ci95"]
            ci_text = f", 95% CI [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else ""
            which = "off-diagonal" if "cross_layer_mean" in entry else "diagonal"
            title += f"\nmean {which} {summary['value']:.3f}{ci_text}"
            title += _null_text(
                entry.get("null"), "cross_layer_mean" if which == "off-diagonal" else "diagonal_mean"
            )
        png, html = out / f"similarity_{metric}.png", out / f"similarity_{metric}.html"
        xs, ys = record["sites_b"], record["sites_a"]
        _heatmap_png(m, lo, hi, "viridis", xs, ys, (a, b, metric), title, png)
        _heatmap_html(m, lo, hi, "Viridis", xs, ys, metric, title, html)
        written += [png, html]
    return written


def _null_text(null: dict | None, name: str) -> str:
    """A third title line for a summary with a permutation null: its mean, 95th percentile and the excess."""
    if not null or name not in null:
        return ""
    s = null[name]
    return (
        f"\npermutation null {s['mean']:.3f} (95th pct {s['p95']:.3f}), excess {null['excess']['value']:.3f}"
    )


def difference_figures(first: dict, second: dict, out: Path, metric: str = "cka") -> list[Path]:
    """`first` minus `second` (two similarity records of the same sites, e.g. LN-tuned minus fully
    finetuned) on a diverging scale centred at 0: where the first model's layers are less alike (blue)."""
    m = np.array(first["metrics"][metric]["matrix"], dtype=float)
    n = np.array(second["metrics"][metric]["matrix"], dtype=float)
    if m.shape != n.shape:
        return []
    d = m - n
    bound = float(np.abs(d).max()) or 1.0
    a, b = labels(first)[0], labels(second)[0]
    off = d[~np.eye(*d.shape, dtype=bool)].mean()
    title = f"{metric}: {a} minus {b} (cross-layer mean difference {off:+.3f})"
    png, html = out / f"{metric}_difference.png", out / f"{metric}_difference.html"
    xs, ys = first["sites_b"], first["sites_a"]
    _heatmap_png(d, -bound, bound, "RdBu_r", xs, ys, (a, a, f"{metric} difference"), title, png, center=0.0)
    _heatmap_html(d, -bound, bound, "RdBu", xs, ys, f"{metric} difference", title, html)
    return [png, html]
