"""Norm-gradient distributions over training (the paper's gradient figure): for each training run that
recorded gradient statistics (`--gradvar-every`), the spread of its norm-weight gradient values at every
recorded step, LN-tuned and fully finetuned side by side on one y scale, and the cumulative variance tr(Σ)/p
of the norm groups after each recorded step.

    python analyses/fig_grad_variance.py runs/demo --out runs/figures [--run RUN_DIR ...]

By default the runs are the two the claims report used (claims.json), else every run found.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from common import find, need, parse, recorded, save
from plotly.subplots import make_subplots
from safetensors.numpy import load_file


def _variance(run) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for line in (run / "gradvar.jsonl").read_text().splitlines():
        row = json.loads(line)
        norms = [g for k, g in row["groups"].items() if k.startswith("norms.") or k == "final_norm"]
        if norms:
            steps.append(row["step"])
            values.append(sum(g["variance"] * g["numel"] for g in norms) / sum(g["numel"] for g in norms))
    return steps, values


def _claims_runs(results: Path) -> list[Path]:
    """The training runs claims.json names (relative to its folder: a moved results tree still has them)."""
    for path in find(results, "claims.json"):
        cfg = json.loads(path.read_text())["config"]
        return [recorded(run, path) for run in (*cfg.get("ln_runs", []), *cfg.get("full_runs", []))]
    return []


def main() -> None:
    args = parse(__doc__, lambda p: p.add_argument("--run", action="append", help="run directories to show"))
    traces = find(args.results, "gradvar_trace.safetensors")
    need(traces, "training gradient traces (gradvar_trace.safetensors)", args.results)
    runs = {str(t.parent.relative_to(args.results)): t.parent for t in traces}
    chosen = [Path(r) for r in args.run] if args.run else _claims_runs(args.results)
    if chosen:  # the LN-tuned and fully finetuned runs the claims report used, or those asked for
        runs = {k: v for k, v in runs.items() if any(v.resolve() == c.resolve() for c in chosen)}
        need(list(runs), f"gradient traces in {', '.join(map(str, chosen))}", args.results)
    data = {name: load_file(str(run / "gradvar_trace.safetensors")) for name, run in runs.items()}
    bound = max(float(np.percentile(np.abs(d["norm_grads"]), 99.5)) for d in data.values())
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.2 * (len(runs) + 1), 3.8), squeeze=False)
    page = make_subplots(rows=1, cols=len(runs) + 1, subplot_titles=[*runs, "norm-gradient variance"])
    for k, (name, d) in enumerate(data.items()):
        steps, grads = d["steps"], d["norm_grads"]
        groups = [grads[steps == s].ravel() for s in np.unique(steps)]
        ax = axes[0][k]
        ax.boxplot(groups, showfliers=False)
        ax.set_xticks(range(1, len(groups) + 1), [str(s) for s in np.unique(steps)], fontsize=7)
        ax.set_ylim(-bound, bound)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("norm-weight gradient value" if k == 0 else "")
        for s, g in zip(np.unique(steps), groups, strict=True):
            page.add_trace(go.Box(y=g, name=str(s), showlegend=False, boxpoints=False), row=1, col=k + 1)
        xs, ys = _variance(runs[name])
        axes[0][-1].plot(xs, ys, marker="o", label=name)
        page.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name), row=1, col=len(runs) + 1)
    axes[0][-1].set_yscale("log")
    axes[0][-1].set_xlabel("training step")
    axes[0][-1].set_ylabel("cumulative tr(Σ)/p, norm weights")
    axes[0][-1].legend(fontsize=7)
    page.update_yaxes(type="log", col=len(runs) + 1)
    caption = (
        "Norm-weight gradients of each recorded micro-batch (boxes: quartiles and 1.5 IQR whiskers; "
        "shared y scale) and their per-element variance accumulated over training."
    )
    save(fig, page, args.out, "grad_variance", caption, args.root)


if __name__ == "__main__":
    main()
