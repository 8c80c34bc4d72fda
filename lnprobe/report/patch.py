"""Figures of `lnprobe patch`: per decoder layer, the fraction of the tuning's loss gain that patching one
norm recovers (tuned norm into the base) or loses (base norm into the tuned model), with 95 % bootstrap
intervals, and the cumulative curves. PNG (matplotlib) and HTML (plotly, `lnprobe.report.page`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from lnprobe.report.page import write_page  # noqa: E402

PANELS = (("into_base", "recovered", "tuned norm into the base: recovered"),
          ("out_of_tuned", "lost", "base norm into the tuned: lost"))  # fmt: skip


def _series(record: dict, cond: str, stat: str) -> dict[str, tuple[list, list, list, list]]:
    """{kind: (layers, values, lower errors, upper errors)}; the final norm at layer L."""
    return _rows_series(record["units"], lambda row: row[cond][stat])


def _rows_series(rows: list[dict], stat) -> dict[str, tuple[list, list, list, list]]:
    """{norm kind: (layers, values, lower errors, upper errors)} of `stat(row)` ({value, ci95}); the final
    norm at layer L."""
    layers = 1 + max((r["layer"] for r in rows if r["layer"] is not None), default=-1)
    out: dict[str, tuple[list, list, list, list]] = {}
    for row in rows:
        f = stat(row)
        if f["value"] is None:
            continue
        xs, ys, lo, hi = out.setdefault(row["kind"], ([], [], [], []))
        xs.append(row["layer"] if row["layer"] is not None else layers)
        ys.append(f["value"])
        ci = f["ci95"] or (f["value"], f["value"])
        lo.append(max(f["value"] - ci[0], 0.0))
        hi.append(max(ci[1] - f["value"], 0.0))
    return out


def _cumulative(record: dict) -> dict[str, tuple[list, list]]:
    return {
        f"layers {'0..k' if side == 'bottom' else 'k..L-1'}": (
            [p["k"] for p in points if p["recovered"]["value"] is not None],
            [p["recovered"]["value"] for p in points if p["recovered"]["value"] is not None],
        )
        for side, points in record["cumulative"].items()
    }


def _accuracy(record: dict) -> str:
    acc = record.get("accuracy")
    return f"; accuracy {acc['base']:.3f} -> {acc['tuned']:.3f}" if acc else ""


def patch_figures(record: dict, out: Path) -> list[Path]:
    cfg = record["config"]
    title = (
        f"norm patching: {Path(cfg['tuned']).name} vs {Path(cfg['base']).name} "
        f"({record['examples']} examples; L_base {record['losses']['base']:.4f}, "
        f"L_tuned {record['losses']['tuned']:.4f}{_accuracy(record)})"
    )
    cumulative = _cumulative(record)
    cols = 3 if cumulative else 2
    fig, axes = plt.subplots(1, cols, figsize=(5 * cols, 4.2))
    for ax, (cond, stat, label) in zip(axes, PANELS, strict=False):
        for kind, (xs, ys, lo, hi) in _series(record, cond, stat).items():
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"{kind} norm")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set(xlabel="decoder layer (final norm at L)", ylabel=f"{stat} fraction", title=label)
    if cumulative:
        for label, (xs, ys) in cumulative.items():
            axes[2].plot(xs, ys, marker="o", label=label)
        axes[2].set(xlabel="k", ylabel="recovered fraction", title="cumulative, into the base")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if record["gap"]["value"] == 0:
        fig.text(0.5, 0.5, "L_base == L_tuned: fractions undefined", ha="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png = out / "patch.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    titles = [label for _, _, label in PANELS] + (["cumulative, into the base"] if cumulative else [])
    page = make_subplots(rows=1, cols=cols, subplot_titles=titles)
    for col, (cond, stat, _) in enumerate(PANELS, 1):
        for kind, (xs, ys, lo, hi) in _series(record, cond, stat).items():
            error = {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}
            page.add_trace(
                go.Scatter(x=xs, y=ys, error_y=error, mode="lines+markers", name=f"{kind} norm ({stat})"),
                row=1,
                col=col,
            )
    for label, (xs, ys) in cumulative.items():
        page.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label), row=1, col=3)
    page.update_xaxes(title_text="decoder layer")
    page.update_yaxes(title_text="fraction")
    html = out / "patch.html"
    write_page(page.update_layout(title=title), html)
    return [png, html, *token_figures(record, out)]


TOKENS = ("image", "text", "both")


def token_figures(record: dict, out: Path) -> list[Path]:
    """patch_tokens.png / .html: per token kind, the fraction recovered by patching one norm's output into
    the base at those tokens only, per layer and norm kind."""
    rows = record.get("activations") or []
    if not rows:
        return []
    title = f"norm outputs patched into the base, by token kind ({record['examples']} examples)"
    series = {
        t: _rows_series([r for r in rows if r["tokens"] == t], lambda r: r["recovered"]) for t in TOKENS
    }
    fig, axes = plt.subplots(1, len(TOKENS), figsize=(5 * len(TOKENS), 4.2), sharey=True)
    for ax, tokens in zip(axes, TOKENS, strict=True):
        for kind, (xs, ys, lo, hi) in series[tokens].items():
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"{kind} norm")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set(xlabel="decoder layer (final norm at L)", title=f"{tokens} tokens")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("recovered fraction")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png = out / "patch_tokens.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    page = make_subplots(rows=1, cols=len(TOKENS), subplot_titles=[f"{t} tokens" for t in TOKENS])
    for col, tokens in enumerate(TOKENS, 1):
        for kind, (xs, ys, lo, hi) in series[tokens].items():
            error = {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}
            trace = go.Scatter(
                x=xs, y=ys, error_y=error, mode="lines+markers", name=f"{kind} norm", legendgroup=kind,
                showlegend=col == 1,
            )  # fmt: skip
            page.add_trace(trace, row=1, col=col)
    page.update_xaxes(title_text="decoder layer")
    page.update_yaxes(title_text="recovered fraction", col=1)
    html = out / "patch_tokens.html"
    write_page(page.update_layout(title=title), html)
    return [png, html]
