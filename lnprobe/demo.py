"""The embedded default experiment (`make demo`, `lnprobe demo`), end to end on CPU with no download.

Today: write the synthetic shapes task → build and save a tiny LLaVA base → train it with each of the seven
regimes for a few steps (the real training loop: answer-token loss, checkpoints, held-out loss) → print each
regime's trainable share, training loss before/after and held-out loss, and where the checkpoints are.
The full paper miniature (text pre-training, connector pre-training, evaluation, claims report) replaces
this as it lands.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, save_tiny
from lnprobe.regimes import REGIMES
from lnprobe.train import TrainConfig, train

# Learning rates for a few steps on the tiny model: norms and the connector take large steps.
LRS = {
    "full": 1e-3,
    "lora": 3e-3,
    "attn-qv": 3e-3,
    "attn-mlp": 1e-3,
    "ln": 1e-2,
    "ln-simp": 3e-2,
    "connector": 1e-2,
}


def run_demo(out: Path, steps: int = 30, console: Console | None = None, seed: int = 0) -> dict:
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "instruct.json").is_file():
        write_synth(data, SynthConfig(n=120, seed=seed))
    base = out / "tiny-base"
    if not base.is_dir():
        save_tiny(base, TinyConfig(seed=seed))
    rows = []
    for regime in track(REGIMES.names(), description="regimes", console=console):
        run = out / "runs" / regime
        config = TrainConfig(
            model=str(base),
            regime=regime,
            data=str(data / "instruct.json"),
            eval_data=str(data / "eval.json"),
            out=str(run),
            lr=LRS[regime],
            max_steps=steps,
            batch_size=8,
            warmup_ratio=0.1,
            seed=seed,
            progress=False,
            resume=str(run) if (run / "latest").is_file() else None,
        )
        result = train(config)
        start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])  # step 0: the base
        rows.append(
            {
                "regime": regime,
                "eval_before": start["eval_loss"],
                "eval_after": result.eval_loss,
                "train_loss": result.final_loss,
                "checkpoint": str(result.checkpoint),
            }
        )
    (out / "demo_results.json").write_text(json.dumps(rows, indent=2) + "\n")
    _print(rows, console)
    console.print(f"results: {out / 'demo_results.json'}; checkpoints under {out / 'runs'}")
    return {"rows": rows}


def _print(rows: list[dict], console: Console) -> None:
    table = Table(title="tiny LLaVA on the synthetic shapes task: each regime after a few steps")
    for col in ("regime", "held-out loss before", "after", "last training loss"):
        table.add_column(col, justify="left" if col == "regime" else "right")
    for r in rows:
        table.add_row(
            r["regime"], f"{r['eval_before']:.3f}", f"{r['eval_after']:.3f}", f"{r['train_loss']:.3f}"
        )
    console.print(table)
