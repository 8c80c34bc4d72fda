"""Cross-layer similarity heatmaps side by side (the paper's layer-similarity figure): one panel per model,
one shared colour scale, the mean off-diagonal value and its 95 % interval in each title.

    python analyses/fig_layer_similarity.py runs/demo --out runs/figures [--metric cka]
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import seaborn as sns
from common import find, label, need, parse, save
from plotly.subplots import make_subplots

ORDER = ["base", "ln", "ln-simp", "lora", "full"]


def main() -> None:
    args = parse(__doc__, lambda p: p.add_argument("--metric", choices=("cka", "cosine"), default="cka"))
    metric = args.metric
    paths = [
        p for p in find(args.results, "similarity.json") if json.loads(p.read_text())["config"]["b"] is None
    ]
    need(paths, "single-checkpoint similarity.json", args.results)
    records = {label(p, args.results): json.loads(p.read_text()) for p in paths}
    names = sorted(records, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    mats = {n: np.array(records[n]["metrics"][metric]["matrix"]) for n in names}
    lo, hi = min(m.min() for m in mats.values()), max(m.max() for m in mats.values())
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False)
    page = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    for k, name in enumerate(names):
        summary = records[name]["metrics"][metric]["cross_layer_mean"]
        ci = summary["ci95"]
        ax = axes[0][k]
        sns.heatmap(
            mats[name],
            vmin=lo,
            vmax=hi,
            cmap="viridis",
            square=True,
            ax=ax,
            cbar=k == len(names) - 1,
            cbar_kws={"label": metric},
        )
        interval = "no interval" if not ci or None in ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        ax.set_title(f"{name}\nmean off-diag {summary['value']:.3f} {interval}", fontsize=9)
        ax.set_xlabel("decoder layer")
        ax.set_ylabel("decoder layer" if k == 0 else "")
        page.add_trace(
            go.Heatmap(z=mats[name], zmin=lo, zmax=hi, colorscale="Viridis", showscale=k == 0),
            row=1,
            col=k + 1,
        )
    page.update_yaxes(autorange="reversed")
    page.update_layout(title=f"cross-layer {metric} of decoder-layer outputs")
    tokens = records[names[0]]["config"]["tokens"]
    caption = (
        f"Layer x layer {metric} of decoder-layer outputs ({tokens} tokens, same inputs for every model); "
        "shared colour scale; titles give the mean over off-diagonal pairs with its 95 % bootstrap interval."
    )
    save(fig, page, args.out, f"layer_similarity_{metric}", caption, args.root)


if __name__ == "__main__":
    main()
