"""Trainable parameters and training memory per regime at the paper's shapes (from a `lnprobe params
--json` file or the demo's params_llava-7b.json): trainable share on a log scale, and the memory estimate
split into frozen weights, trainable master copies, gradients and optimizer moments.

    python analyses/fig_params_memory.py runs/demo --out runs/figures
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from common import find, need, parse, save
from plotly.subplots import make_subplots

PARTS = ("frozen_weights", "trainable_weights", "gradients", "optimizer")


def _rows(path) -> tuple[str, list[dict]]:
    data = json.loads(path.read_text())
    if "regimes" in data:
        return data.get("model", path.stem), data["regimes"]
    first = next(iter(data.values())) if isinstance(data, dict) else data
    return path.stem, first if isinstance(first, list) else [first]


def main() -> None:
    args = parse(__doc__)
    paths = find(args.results, "params_*.json")
    need(paths, "params_*.json (lnprobe params --json output)", args.results)
    model, rows = _rows(paths[0])
    names = [r["regime"] for r in rows]
    pct = [r["percent"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(names, pct, color="tab:blue")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("trainable parameters (% of all)")
    for x, v in enumerate(pct):
        axes[0].text(x, v, f"{v:.3g}%", ha="center", va="bottom", fontsize=7)
    page = make_subplots(rows=1, cols=2, subplot_titles=["trainable share", "memory estimate (GiB)"])
    page.add_trace(go.Bar(x=names, y=pct, name="trainable %"), row=1, col=1)
    page.update_yaxes(type="log", row=1, col=1)
    bottom = [0.0] * len(rows)
    for part in PARTS:
        vals = [
            r["memory"].get(part, 0) / 2**30 if isinstance(r["memory"].get(part), int | float) else 0
            for r in rows
        ]
        axes[1].bar(names, vals, bottom=bottom, label=part.replace("_", " "))
        page.add_trace(go.Bar(x=names, y=vals, name=part), row=1, col=2)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    axes[1].set_ylabel("GiB (activations excluded)")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    page.update_layout(barmode="stack", title=f"{model}: parameters and memory per regime")
    caption = (
        f"{model}: trainable share of all parameters (vision tower included) and the static training "
        "memory estimate (frozen weights in the model dtype, fp32 masters, gradients and AdamW moments)."
    )
    save(fig, page, args.out, "params_memory", caption, args.root)


if __name__ == "__main__":
    main()
