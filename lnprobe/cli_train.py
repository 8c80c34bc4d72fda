"""`lnprobe data synth`, `train`, `sweep` and `export`: the training side of the command line (registered on
the app in `lnprobe.cli`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lnprobe.cli_options import with_dataclass_options
from lnprobe.errors import InputError
from lnprobe.train.config import TrainConfig

console = Console(width=None if sys.stdout.isatty() else 120)


def data_synth(
    out: Annotated[Path, typer.Argument(help="Directory to write the dataset to.")],
    n: Annotated[int, typer.Option("--n", help="Number of pictures.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed (the data is deterministic per seed).")] = 0,
    text_scenes: Annotated[
        int, typer.Option("--text-scenes", help="Extra scenes described in text.jsonl only (no picture).")
    ] = 0,
    qtypes: Annotated[
        str, typer.Option(help="Question types asked, comma-separated.")
    ] = "colour,shape,count,has-shape,has-colour",
    max_shapes: Annotated[
        int, typer.Option("--max-shapes", help="Shapes per picture: 1 to this many (<= 3).")
    ] = 3,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Write the synthetic shapes task in LLaVA format (+ a text-only corpus from the same world)."""
    from lnprobe.data.synth import SynthConfig, write_synth

    if n < 5:
        raise InputError(f"--n must be >= 5, got {n}")
    kinds = tuple(q.strip() for q in qtypes.split(","))
    config = SynthConfig(n=n, seed=seed, text_scenes=text_scenes, qtypes=kinds, max_shapes=max_shapes)
    path = write_synth(out, config, overwrite=force)
    console.print(f"wrote {n} pictures: {path}/{{pretrain,instruct,eval}}.json, text.jsonl, images/")


def data_verify(
    manifest: Annotated[str, typer.Argument(help="Manifest YAML, or a shipped name (e.g. pope).")],
    root: Annotated[Path, typer.Option(help="The dataset's local root directory.")] = Path("."),
) -> None:
    """Check a local dataset copy against its manifest: presence, sizes and sha256 of every file."""
    from lnprobe.data.manifest import read_manifest, verify

    m = read_manifest(manifest)
    if not root.is_dir():
        raise InputError(f"--root {root}: no such directory")
    rows = verify(m, root, progress=sys.stderr.isatty())
    table = Table(title=f"{m.name} under {root}")
    for col in ("file", "status", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["path"], r["status"], r["detail"])
    console.print(table)
    bad = [r for r in rows if r["status"] not in ("ok", "present")]
    if bad:
        raise InputError(f"{m.name}: {len(bad)} of {len(rows)} file(s) missing or mismatched under {root}")
    console.print(
        f"{m.name}: all {len(rows)} file(s) present"
        + ("" if all(r["status"] == "ok" for r in rows) else " (some sizes/hashes unknown, so not checked)")
    )


def data_subset(
    data: Annotated[
        list[str], typer.Option("--data", help="LLaVA JSON/JSONL file(s); kind = `kind` field or file stem.")
    ],
    out: Annotated[Path, typer.Option(help="Output LLaVA JSON (plus OUT.meta.json).")],
    per_kind: Annotated[int | None, typer.Option(help="Equal number of records per kind.")] = None,
    tokens_per_kind: Annotated[int | None, typer.Option(help="Equal number of tokens per kind.")] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint whose tokenizer counts tokens.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Draw a seeded subset of instruction data by kind: equal records or equal tokens per kind."""
    from lnprobe.data.subset import SubsetConfig, make_subset

    cfg = SubsetConfig(tuple(data), str(out), per_kind, tokens_per_kind, model, seed, force)
    meta = make_subset(cfg)
    for kind, s in meta["kinds"].items():
        tokens = "" if s["tokens"] is None else f", {s['tokens']} tokens"
        console.print(f"{kind}: {s['records']} of {s['available']} records{tokens}")
    console.print(f"wrote {out} and {out.with_suffix('.meta.json')}")


TRAIN_HELP = {
    "model": "load() spec, or 'tiny' (a fresh tiny LLaVA saved into the run).",
    "regime": "Training regime: a preset or atoms joined by '+', e.g. lora+connector+embed+head "
    "(lnprobe regimes).",
    "data": "LLaVA JSON/JSONL data file.",
    "image_folder": "Folder the records' image paths are relative to (default: the data file's).",
    "template": "Chat template: vicuna_v1, llama_2 or plain.",
    "out": "Run directory (checkpoints, metrics.jsonl, config).",
    "lr": "Learning rate (peak of the cosine schedule).",
    "lr_norm": "Learning rate for norms (default: --lr).",
    "lr_connector": "Learning rate for the connector (default: --lr).",
    "lr_embed": "Learning rate for word embeddings and output head (default: --lr).",
    "max_steps": "Optimizer steps (overrides --epochs).",
    "batch_size": "Micro-batch size.",
    "grad_accum": "Micro-batches per optimizer step.",
    "save_every": "Checkpoint every N optimizer steps (0: only at the end).",
    "dtype": "auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16.",
    "skip_missing": "Skip records whose image file is missing (counted) instead of stopping.",
    "gradvar_every": "Record gradient statistics every K steps to gradvar.jsonl (0: off).",
    "resume": "RUN_DIR: continue that run from its latest checkpoint (same config; it is the --out).",
}


@with_dataclass_options(TrainConfig, TRAIN_HELP, "YAML/JSON file of these options (flags override it).")
def train_command(config_file: Path | None, values: dict) -> None:
    """Train a model with a regime on LLaVA-format data; checkpoints resume exactly."""
    from lnprobe.config import from_dict
    from lnprobe.train import train
    from lnprobe.train.config import load_config_file

    merged = {**(load_config_file(config_file) if config_file else {}), **values}
    result = train(from_dict(TrainConfig, merged, source=str(config_file or "flags")))
    console.print(
        f"trained {result.steps} steps, final loss {result.final_loss:.4f}; checkpoint: {result.checkpoint}"
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


@with_dataclass_options(
    TrainConfig,
    TRAIN_HELP,
    "YAML/JSON file of the shared training options.",
    extra=SWEEP_EXTRA,
    skip=("regime", "lr", "seed", "resume"),
)
def sweep_command(
    config_file: Path | None, values: dict, regimes: str, lrs: str | None, seeds: str, parallel: int
) -> None:
    """Grid of runs (regimes x learning rates x seeds) with the best learning rate per regime.

    Runs go under --out; finished runs are skipped and interrupted ones resumed; sweep.csv and sweep.json
    hold every run's losses."""
    from lnprobe.config import from_dict
    from lnprobe.train.config import load_config_file
    from lnprobe.train.sweep import PAPER_LRS, plan, run_sweep

    merged = {**(load_config_file(config_file) if config_file else {}), **values}
    base = from_dict(TrainConfig, merged, source=str(config_file or "flags"))
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
    table = Table(title=f"sweep: {len(rows)} runs ({out / 'sweep.csv'})")
    for col in ("regime", "lr", "seed", "final loss", "eval loss"):
        table.add_column(col, justify="left" if col == "regime" else "right")
    for r in rows:
        ev = "-" if r["eval_loss"] is None else f"{r['eval_loss']:.4f}"
        table.add_row(r["regime"], f"{r['lr']:g}", str(r["seed"]), f"{r['final_loss']:.4f}", ev)
    console.print(table)
    best = json.loads((out / "sweep.json").read_text())["best"]
    console.print("best lr: " + ", ".join(f"{k} {v['lr']:g}" for k, v in best.items()))


def export_command(
    delta: Annotated[
        str,
        typer.Argument(
            help="An lnprobe delta of ln, ln-simp or a composition of norms/connector/embed/head."
        ),
    ],
    peft: Annotated[Path, typer.Option("--peft", help="Write a PEFT LN-tuning adapter directory here.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")] = False,
) -> None:
    """Export an ln / ln-simp (or norms/connector/embed/head composition) delta as a PEFT adapter (loads
    with PeftModel.from_pretrained)."""
    from lnprobe.checkpoints.delta import is_delta
    from lnprobe.checkpoints.export import export_peft

    if not is_delta(delta):
        raise InputError(f"{delta}: not an lnprobe delta checkpoint (no lnprobe_delta.json)")
    console.print(f"wrote PEFT adapter {export_peft(delta, peft, overwrite=force)}")
