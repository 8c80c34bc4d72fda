"""Learning-rate sweep: held-out loss against learning rate per regime (from every sweep.json under
RESULTS_DIR), the best learning rate of each regime marked.

    python analyses/fig_lr_sweep.py runs/demo --out runs/figures
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from common import find, need, parse, save


def main() -> None:
    args = parse(__doc__)
    paths = find(args.results, "sweep.json")
    need(paths, "sweep.json (lnprobe sweep output)", args.results)
    data = json.loads(paths[0].read_text())
    key = "best_eval_loss" if all(r["best_eval_loss"] is not None for r in data["runs"]) else "final_loss"
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    page = go.Figure()
    for regime in dict.fromkeys(r["regime"] for r in data["runs"]):
        pts = sorted((r["lr"], r[key]) for r in data["runs"] if r["regime"] == regime)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        line = ax.plot(xs, ys, marker="o", label=regime)[0]
        best = data["best"][regime]["lr"]
        ax.plot([best], [dict(pts)[best]], marker="*", markersize=14, color=line.get_color())
        page.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=regime))
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(key.replace("_", " "))
    ax.legend(fontsize=8)
    page.update_xaxes(type="log", title_text="learning rate")
    page.update_yaxes(title_text=key)
    page.update_layout(title="learning-rate sweep")
    caption = f"{key.replace('_', ' ')} per regime and learning rate ({paths[0].parent}); stars: the best."
    save(fig, page, args.out, "lr_sweep", caption, args.root)


if __name__ == "__main__":
    main()
