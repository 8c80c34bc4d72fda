"""`lnprobe demo`, `lnprobe study` and `lnprobe pretrain text|vision|backbones`: the paper miniature on the
command line (registered on the app in `lnprobe.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lnprobe.cli_options import Group, with_dataclass_options
from lnprobe.miniature.backbones import BackbonesConfig
from lnprobe.pretrain.config import TextPretrainConfig, VisionPretrainConfig

console = Console(width=None if sys.stdout.isatty() else 140)

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


def demo(
    out: Annotated[Path, typer.Option(help="Directory for the demo's outputs.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of everything: data, initialisation, batches.")] = 0,
    pretrain: Pretrain = False,
    smoke: Smoke = False,
) -> None:
    """The embedded default experiment: the paper's pipeline in miniature, end to end on CPU, no download."""
    from lnprobe.demo import run_demo

    run_demo(out, _config(seed, smoke, pretrain=pretrain or None), console=console)


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


pretrain_app = typer.Typer(
    cls=Group,
    help="The stages before `assemble`: pre-train a text LLM, a vision tower, or the miniature's backbones.",
    no_args_is_help=True,
)


@pretrain_app.command("backbones")
@with_dataclass_options(
    BackbonesConfig,
    {"out": "Directory to build them in (data/, vision/, llm/; a finished step is reused)."},
    "YAML/JSON file of these options (flags override it).",
)
def pretrain_backbones_command(config_file: Path | None, values: dict) -> None:
    """Pre-train the miniature's backbones (vision tower, then text LLM) on their own synthetic world."""
    from lnprobe.miniature.backbones import build_backbones

    result = build_backbones(_load(BackbonesConfig, config_file, values))
    scores = ", ".join(f"{k} {v:.3f}" for k, v in result["text_accuracy"].items())
    console.print(f"LLM held-out text answers: {scores}")
    console.print(f"wrote {result['vision']} and {result['llm']}")


@pretrain_app.command("text")
@with_dataclass_options(
    TextPretrainConfig,
    {
        "llm": "Text-only causal LM directory to start from.",
        "data": 'JSONL corpus of {"text": ...} lines.',
        "out": "Directory to write the pre-trained LM to.",
        "compress": "Share of chat lines whose context "
        "sentences are fed as one vector each (see docs/miniature.md).",
    },
    "YAML/JSON file of these options (flags override it).",
)
def pretrain_text_command(config_file: Path | None, values: dict) -> None:
    """Pre-train a causal LM on a text corpus (the paper's Vicuna stage, in miniature)."""
    from lnprobe.pretrain.text import pretrain_text

    result = pretrain_text(_load(TextPretrainConfig, config_file, values))
    console.print(f"final loss {result['losses'][-1]:.4f}; wrote {result['out']}")


@pretrain_app.command("vision")
@with_dataclass_options(
    VisionPretrainConfig,
    {
        "vision": "CLIP vision model directory to start from.",
        "data": "LLaVA JSON of captioned images.",
        "out": "Directory to write the pre-trained tower to.",
    },
    "YAML/JSON file of these options (flags override it).",
)
def pretrain_vision_command(config_file: Path | None, values: dict) -> None:
    """Pre-train a CLIP vision tower contrastively on image-caption pairs."""
    from lnprobe.pretrain.vision import pretrain_vision

    result = pretrain_vision(_load(VisionPretrainConfig, config_file, values))
    console.print(f"final loss {result['losses'][-1]:.4f}; wrote {result['out']}")


def _load(cls, config_file: Path | None, values: dict):
    from lnprobe.config import from_dict
    from lnprobe.train.config import load_config_file

    merged = {**(load_config_file(config_file) if config_file else {}), **values}
    return from_dict(cls, merged, source=str(config_file or "flags"))
