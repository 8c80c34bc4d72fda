"""`lnprobe train` and `lnprobe sweep`: training on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lnprobe.cli.core import app, console
from lnprobe.cli.options import config_command
from lnprobe.errors import InputError
from lnprobe.train.config import TrainConfig


@app.command("train")
@config_command(TrainConfig, config_file="YAML/JSON file of these options (flags override it).")
def train_command(config: TrainConfig) -> None:
    """Train a model with a regime on LLaVA-format data; checkpoints resume exactly."""
    from lnprobe.train import train

    result = train(config)
    plan = Path(config.resolved().out) / "memory_plan.json"  # --grad-ckpt auto
    if config.grad_ckpt == "auto" and plan.is_file():
        console.print(json.loads(plan.read_text())["text"])
    held_out = ""
    if result.eval_loss is not None:
        held_out = f", held-out loss {result.eval_loss:.4f} (best {result.best_eval_loss:.4f})"
        if result.eval_accuracy is not None:
            held_out += f", held-out answer accuracy {result.eval_accuracy:.3f}"
    console.print(
        f"trained {result.steps} steps, final loss {result.final_loss:.4f}{held_out}; "
        f"checkpoint: {result.checkpoint}"
    )


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag}: expected comma-separated integers, got {text!r}") from None


SWEEP_EXTRA = {
    "regimes": (
        Annotated[str, typer.Option(help="Comma-separated regimes (presets or a+b compositions).")],
        "ln,lora,full",
    ),
    "lrs": (
        Annotated[
            str | None,
            typer.Option(help="Comma-separated learning rates (default: the paper's grid 2e-3 ... 1e-7)."),
        ],
        None,
    ),
    "seeds": (Annotated[str, typer.Option(help="Comma-separated seeds.")], "0"),
    "parallel": (Annotated[int, typer.Option(help="Runs at once, as separate processes.")], 1),
}


@app.command("sweep")
@config_command(
    TrainConfig,
    config_file="YAML/JSON file of the shared training options.",
    extra=SWEEP_EXTRA,
    skip=("regime", "lr", "seed", "resume"),
)
def sweep_command(base: TrainConfig, regimes: str, lrs: str | None, seeds: str, parallel: int) -> None:
    """Grid of runs (regimes x learning rates x seeds) with the best learning rate per regime.

    Runs go under --out; finished runs are skipped and interrupted ones resumed; sweep.csv and sweep.json
    hold every run's losses. With --shard fsdp under torchrun the runs go one after another, each sharded
    over every process."""
    from lnprobe.train.sweep import PAPER_LRS, main_process, plan, run_sweep

    out = Path(base.out)
    runs = plan(
        base,
        out,
        [r.strip() for r in regimes.split(",") if r.strip()],
        _floats(lrs, "--lrs") if lrs else list(PAPER_LRS),
        _ints(seeds, "--seeds"),
    )
    if parallel < 1:
        raise InputError(f"--parallel must be >= 1, got {parallel}")
    rows = run_sweep(base, out, runs, parallel)
    if not main_process(base):
        return
    table = Table(title=f"sweep: {len(rows)} runs ({out / 'sweep.csv'})")
    for col in ("regime", "lr", "seed", "final loss", "eval loss", "eval accuracy"):
        table.add_column(col, justify="left" if col == "regime" else "right")
    for r in rows:
        ev = "-" if r["eval_loss"] is None else f"{r['eval_loss']:.4f}"
        acc = "-" if r.get("eval_accuracy") is None else f"{r['eval_accuracy']:.3f}"
        table.add_row(r["regime"], f"{r['lr']:g}", str(r["seed"]), f"{r['final_loss']:.4f}", ev, acc)
    console.print(table)
    best = json.loads((out / "sweep.json").read_text())["best"]
    console.print("best lr: " + ", ".join(f"{k} {v['lr']:g}" for k, v in best.items()))
