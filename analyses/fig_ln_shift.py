"""LayerNorm shift (mechanism 1): for each `lnshift.json` under RESULTS_DIR, the relative weight change of
every decoder norm per layer, and the image-vs-text gap before and after each input norm, base vs tuned.

    python analyses/fig_ln_shift.py runs/demo --out runs/figures
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from common import find, label, need, parse, save
from plotly.subplots import make_subplots


def _layer(name: str) -> int | None:
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p.isdigit() and (i == 1 or parts[i - 1] == "layers"):
            return int(p)
    return None


def main() -> None:
    args = parse(__doc__)
    paths = find(args.results, "lnshift.json")
    need(paths, "lnshift.json", args.results)
    fig, axes = plt.subplots(len(paths), 2, figsize=(10, 3.6 * len(paths)), squeeze=False)
    page = make_subplots(
        rows=len(paths),
        cols=2,
        subplot_titles=[
            t
            for p in paths
            for t in (
                f"{label(p, args.results)}: weight change",
                f"{label(p, args.results)}: image-vs-text gap",
            )
        ],
    )
    for row, path in enumerate(paths):
        rec = json.loads(path.read_text())
        for kind in ("input_layernorm", "post_attention_layernorm"):
            pts = sorted(
                (_layer(n), s["rel_l2"])
                for n, s in rec["weights"].items()
                if kind in n and "vision" not in n and _layer(n) is not None
            )
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            axes[row][0].plot(xs, ys, marker="o", label=kind)
            page.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=kind), row=row + 1, col=1)
        for model, style in (("base", "--"), ("tuned", "-")):
            for port in ("in", "out"):
                pts = sorted(
                    (_layer(s), g[model])
                    for s, g in rec["gaps"].items()
                    if s.startswith("input_norm") and s.endswith(port) and g.get(model) is not None
                )
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                axes[row][1].plot(xs, ys, style, marker="o", label=f"{model}, norm {port}put")
                page.add_trace(
                    go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{model} {port}"), row=row + 1, col=2
                )
        axes[row][0].set_ylabel("relative L2 change |w - w0| / |w0|")
        axes[row][1].set_ylabel("image-vs-text gap (W2 / text RMS)")
        axes[row][1].set_yscale("log")
        for ax in axes[row]:
            ax.set_xlabel("decoder layer")
            ax.legend(fontsize=7)
        axes[row][0].set_title(label(path, args.results), fontsize=9)
    caption = (
        "Left: how far tuning moved each decoder norm's weight. Right: distance between image-token and "
        "text-token statistics before and after each input norm (lower: image tokens look more like text)."
    )
    save(fig, page, args.out, "ln_shift", caption, args.root)


if __name__ == "__main__":
    main()
