"""`lnprobe demo` and `lnprobe study`: the paper miniature on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lnprobe.cli.core import app
from lnprobe.cli.core import wide_console as console

Smoke = Annotated[bool, typer.Option("--smoke", help="Seconds-long scale: every stage runs, nothing learns.")]
Pretrain = Annotated[
    bool,
    typer.Option(
        "--pretrain",
        help="Pre-train the vision tower and the LLM in the run instead of using the shipped ones.",
    ),
]


def _config(seed: int, smoke: bool, **kw):
    from lnprobe.miniature.config import SMOKE, MiniatureConfig

    return MiniatureConfig(
        seed=seed, **(SMOKE if smoke else {}), **{k: v for k, v in kw.items() if v is not None}
    )


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the demo's outputs.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of everything: data, initialisation, batches.")] = 0,
    pretrain: Pretrain = False,
    smoke: Smoke = False,
) -> None:
    """The embedded default experiment: the paper's pipeline in miniature, end to end on CPU, no download."""
    from lnprobe.demo import run_demo

    run_demo(out, _config(seed, smoke, pretrain=pretrain or None), console=console)


@app.command("study")
def study(
    out: Annotated[
        Path, typer.Option(help="Directory for the study (one miniature per seed inside).")
    ] = Path("runs/study"),
    seeds: Annotated[int, typer.Option(help="Number of seeds (0, 1, ... N-1).")] = 3,
    llm: Annotated[str | None, typer.Option(help="Start from this text LLM (HF id or directory).")] = None,
    vision: Annotated[str | None, typer.Option(help="Start from this CLIP vision tower.")] = None,
    online: Annotated[bool, typer.Option("--online", help="Allow downloading --llm / --vision.")] = False,
    pretrain: Pretrain = False,
    smoke: Smoke = False,
) -> None:
    """The miniature over several seeds: accuracy with intervals over seeds, goals, claims pooled."""
    from lnprobe.demo import _claim
    from lnprobe.errors import InputError
    from lnprobe.miniature.study import run_study

    if seeds < 1:
        raise InputError(f"--seeds {seeds}: must be >= 1")
    cfg = _config(0, smoke, llm=llm, vision=vision, online=online or None, pretrain=pretrain or None)
    _claim(out, "study")
    result = run_study(out, cfg, list(range(seeds)), progress=console.is_terminal)
    for name, a in result["accuracy"].items():
        lo, hi = a["ci95"] or (float("nan"),) * 2
        console.print(f"{name:12} accuracy {a['value']:.3f} [{lo:.3f}, {hi:.3f}]")
    for cid, c in result["claims"].items():
        console.print(f"claim {cid}: {c['verdict']} (per seed: {', '.join(c['per_seed'])})")
    console.print(f"wrote {out}/study.json, study.md, accuracy.png")
