"""Per-layer figures for the gradient and LayerNorm probes: PNG (matplotlib/seaborn) and interactive HTML
(plotly, loading the results tree's one plotly.min.js, `lnprobe.report.page`, so the page opens offline)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from lnprobe.report.page import write_page  # noqa: E402


def _per_layer(rows: dict, key: str) -> dict[str, tuple[list[int], list[float]]]:
    """{kind: (layers, values)} from {group: {kind, layer, key}} rows with a layer index."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows.values():
        if row.get("layer") is not None:
            xs, ys = out.setdefault(row["kind"], ([], []))
            xs.append(row["layer"])
            ys.append(row[key])
    return out


def gradvar_figures(record: dict, trace: list[torch.Tensor], out: Path) -> list[Path]:
    """Per-layer gradient variance by group kind (log scale), and the distribution of norm-gradient values."""
    lines = _per_layer(record["groups"], "variance")
    name = Path(record["config"]["ckpt"]).name
    title = (
        f"gradient variance per layer: {name} ({record['samples']} samples, unit {record['config']['unit']})"
    )
    values = torch.stack(trace).flatten().numpy() if trace else None
    fig, axes = plt.subplots(1, 2 if values is not None else 1, figsize=(11, 4.2), squeeze=False)
    ax = axes[0][0]
    for kind, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o", label=kind)
    positive = any(y is not None and y > 0 for _, ys in lines.values() for y in ys)
    ax.set_yscale("log" if positive else "linear")  # all-zero variances (layers that write nothing): linear
    ax.set_xlabel("decoder layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("variance tr(Σ)/p")
    ax.legend()
    ax.set_title(title, fontsize=9)
    if values is not None:
        axes[0][1].hist(values, bins=80, color="tab:blue")
        axes[0][1].set_yscale("log")
        axes[0][1].set_xlabel("norm-weight gradient value (all samples, all norms)")
        axes[0][1].set_ylabel("count")
    fig.tight_layout()
    png = out / "gradvar.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    cols = 2 if values is not None else 1
    page = make_subplots(rows=1, cols=cols, subplot_titles=["variance per layer", "norm gradients"][:cols])
    for kind, (xs, ys) in lines.items():
        page.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=kind), row=1, col=1)
    page.update_yaxes(type="log", title_text="tr(Σ)/p", row=1, col=1)
    page.update_xaxes(title_text="decoder layer", row=1, col=1)
    if values is not None:
        page.add_trace(go.Histogram(x=values, nbinsx=80, name="norm gradients"), row=1, col=2)
        page.update_yaxes(type="log", row=1, col=2)
    html = out / "gradvar.html"
    write_page(page.update_layout(title=title), html)
    return [png, html]


def _layer_of(name: str) -> int | None:
    """The decoder-layer index in a tensor name (`...layers.3.input_layernorm.weight`) or a site name
    (`input_norm.3.in`)."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit() and (i == 1 or parts[i - 1] == "layers"):
            return int(part)
    return None


def lnshift_figures(record: dict, out: Path) -> list[Path]:
    """Relative weight change per decoder layer (input and post-attention norms), and the image-vs-text gap
    at each norm's input and output, base vs tuned."""
    shift: dict[str, tuple[list[int], list[float]]] = {}
    for name, s in record["weights"].items():
        layer = _layer_of(name)
        if layer is not None and "vision" not in name and name.endswith("weight"):
            kind = "post_attention" if "post_attention" in name else "input"
            xs, ys = shift.setdefault(kind, ([], []))
            xs.append(layer)
            ys.append(s["rel_l2"])
    gaps: dict[str, tuple[list[int], list[float]]] = {}
    for site, by_model in record["gaps"].items():
        layer = _layer_of(site)
        if layer is None or not site.startswith("input_norm"):
            continue
        for model, value in by_model.items():
            xs, ys = gaps.setdefault(f"{model}, norm {site.rsplit('.', 1)[1]}put", ([], []))
            xs.append(layer)
            ys.append(value)
    cfg = record["config"]
    title = f"LayerNorm shift: {Path(cfg['ckpt']).name} vs {Path(cfg['base']).name}"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, (xs, ys) in shift.items():
        axes[0].plot(xs, ys, marker="o", label=f"{kind} norm")
    axes[0].set_xlabel("decoder layer")
    axes[0].set_ylabel("relative L2 change of the weight")
    axes[0].set_title(title, fontsize=9)
    for label, (xs, ys) in gaps.items():
        axes[1].plot(xs, ys, marker="o", linestyle="-" if "tuned" in label else "--", label=label)
    axes[1].set_xlabel("decoder layer (input norm)")
    axes[1].set_ylabel("image-vs-text gap (W2 / text RMS)")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    png = out / "lnshift.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    page = make_subplots(rows=1, cols=2, subplot_titles=["weight change", "image-vs-text gap"])
    for kind, (xs, ys) in shift.items():
        page.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{kind} norm"), row=1, col=1)
    for label, (xs, ys) in gaps.items():  # the base dashed with open markers: tuned and base often overlap
        base = "tuned" not in label
        style = {
            "line": {"dash": "dash" if base else "solid"},
            "marker": {"symbol": "circle-open" if base else "circle"},
        }
        page.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines+markers", name=label, legend="legend2", **style), row=1, col=2
        )
    page.update_xaxes(title_text="decoder layer")
    page.update_yaxes(title_text="relative L2 change", row=1, col=1)
    page.update_yaxes(title_text="W2 / text RMS", row=1, col=2)
    legends = {  # one legend under each panel
        "legend": {"x": 0.0, "y": -0.25, "xanchor": "left", "orientation": "h"},
        "legend2": {"x": 0.56, "y": -0.25, "xanchor": "left", "orientation": "h"},
    }
    html = out / "lnshift.html"
    write_page(page.update_layout(title=title, margin={"b": 140}, **legends), html)
    return [png, html]


def training_variance_figures(runs: dict[str, str], out: Path) -> list[Path]:
    """Norm-gradient variance over training (the mean over norm groups of each `gradvar.jsonl` record, log
    scale), one line per run (`{label: run directory}`); nothing when no run recorded any."""
    import json

    lines = {}
    for label, run in runs.items():
        path = Path(run) / "gradvar.jsonl"
        if not path.is_file():
            continue
        steps, values = [], []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            norms = [g["variance"] for k, g in record.get("groups", {}).items() if k.startswith("norms")]
            if norms:
                steps.append(record["step"])
                values.append(sum(norms) / len(norms))
        if steps:
            lines[label] = (steps, values)
    if not lines:
        return []
    title = "norm-gradient variance over training (mean over norm groups)"
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(yscale="log", xlabel="optimizer step", ylabel="variance tr(Σ)/p", title=title)
    ax.legend()
    fig.tight_layout()
    png, html = out / "gradvar_training.png", out / "gradvar_training.html"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    page = go.Figure(
        [go.Scatter(x=xs, y=ys, mode="lines+markers", name=label) for label, (xs, ys) in lines.items()]
    )
    page.update_layout(title=title, xaxis_title="optimizer step", yaxis={"type": "log", "title": "variance"})
    write_page(page, html)
    return [png, html]
