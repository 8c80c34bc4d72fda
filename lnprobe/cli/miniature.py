"""`lnprobe demo` and `lnprobe study`: the paper miniature on the command line, every option a field of
`MiniatureConfig`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from lnprobe.cli.core import app
from lnprobe.cli.core import wide_console as console
from lnprobe.cli.options import config_command
from lnprobe.miniature.config import SMOKE, MiniatureConfig

CONFIG_FILE = "YAML/JSON file of these options (flags override it)."
SMOKE_OPTION = (
    Annotated[
        bool,
        typer.Option(
            "--smoke", help="Seconds-long scale: every stage runs, nothing learns (flags override it)."
        ),
    ],
    False,
)


def _smoke(cfg: MiniatureConfig, smoke: bool) -> MiniatureConfig:
    """`--smoke`: the SMOKE scale for every field still at its default."""
    if not smoke:
        return cfg
    default = MiniatureConfig()
    keep = {k: v for k, v in SMOKE.items() if getattr(cfg, k) == getattr(default, k)}
    return dataclasses.replace(cfg, **keep)


@app.command("demo")
@config_command(
    MiniatureConfig,
    config_file=CONFIG_FILE,
    extra={
        "out": (Annotated[Path, typer.Option(help="Directory for the demo's outputs.")], Path("runs/demo")),
        "smoke": SMOKE_OPTION,
    },
)
def demo(cfg: MiniatureConfig, out: Path, smoke: bool) -> None:
    """The embedded default experiment: the paper's pipeline in miniature, end to end on CPU, no download."""
    from lnprobe.miniature.demo import run_demo

    run_demo(out, _smoke(cfg, smoke), console=console)


@app.command("study")
@config_command(
    MiniatureConfig,
    config_file=CONFIG_FILE,
    skip=("seed",),
    extra={
        "out": (
            Annotated[Path, typer.Option(help="Directory for the study (one miniature per seed inside).")],
            Path("runs/study"),
        ),
        "seeds": (Annotated[int, typer.Option(help="Number of seeds (0, 1, ... N-1).")], 3),
        "smoke": SMOKE_OPTION,
    },
)
def study(cfg: MiniatureConfig, out: Path, seeds: int, smoke: bool) -> None:
    """The miniature over several seeds: accuracy with intervals over seeds, goals, claims pooled."""
    from lnprobe.errors import InputError
    from lnprobe.io import claim_dir
    from lnprobe.miniature.study import run_study

    if seeds < 1:
        raise InputError(f"--seeds {seeds}: must be >= 1")
    claim_dir(out, "study")
    result = run_study(out, _smoke(cfg, smoke), list(range(seeds)), progress=console.is_terminal)
    for name, a in result["accuracy"].items():
        lo, hi = a["ci95"] or (float("nan"),) * 2
        console.print(f"{name:12} accuracy {a['value']:.3f} [{lo:.3f}, {hi:.3f}]")
    for cid, c in result["claims"].items():
        console.print(f"claim {cid}: {c['verdict']} (per seed: {', '.join(c['per_seed'])})")
    console.print(f"wrote {out}/study.json, study.md, accuracy.png")
