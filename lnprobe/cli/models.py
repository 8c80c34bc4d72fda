"""`lnprobe params`, `regimes`, `sites`, `tiny`, `assemble` and `export`: models and checkpoints on the
command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lnprobe.cli.core import app, console
from lnprobe.cli.options import REQUIRED, config_command
from lnprobe.errors import InputError
from lnprobe.models.config import AssembleConfig, TinyConfig

ModelArg = Annotated[
    str,
    typer.Argument(
        help="Checkpoint dir, PEFT adapter dir, lnprobe delta dir, hub id, config .json, or preset "
        "(llava-7b, llava-13b, llava-1.5-7b, llava-1.5-13b, llava-1b, tiny).",
        show_default=False,
    ),
]
OnlineOpt = Annotated[
    bool, typer.Option("--online", help="Allow downloading a hub id (off: local cache only).")
]
BaseOpt = Annotated[
    str | None, typer.Option("--base", help="Base model for an adapter/delta (overrides its own).")
]


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f}"


def _short(n: int) -> str:
    """1234567 → '1.23M' (group columns stay narrow; the exact total is in its own column)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


@app.command()
def params(
    model: ModelArg,
    regime: Annotated[
        list[str] | None,
        typer.Option(
            "--regime",
            "-r",
            help="Regime(s) to count (repeatable): a preset or atoms joined by '+'; default: every preset.",
        ),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="Model dtype for the memory estimate: bf16, fp16 or fp32.")
    ] = "bf16",
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 32,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha (default 2 x rank).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    shard: Annotated[
        int, typer.Option(help="Also estimate memory per process with --shard fsdp over N processes.")
    ] = 1,
    base: BaseOpt = None,
    online: OnlineOpt = False,
) -> None:
    """Trainable parameters per regime, by group, with a training-memory estimate, and LN vs LoRA under
    each reading of the paper's LoRA with the rank that gives the paper's -41.9 %.

    The model is built on the meta device (no weights are read), so 7B/13B shapes take seconds."""
    from lnprobe.models import build_from_config, resolve_config
    from lnprobe.models.load import parse_dtype
    from lnprobe.params import GROUPS, LORA_READINGS, lora_readings, params_table
    from lnprobe.provenance import provenance
    from lnprobe.regimes import REGIMES, RegimeOptions, resolve_regime

    if shard < 1:
        raise InputError(f"--shard {shard}: must be >= 1 (processes)")
    regimes = regime or REGIMES.names()
    for name in regimes:
        resolve_regime(name)  # unknown names fail before any work
    options = RegimeOptions(lora_rank=lora_rank, lora_alpha=lora_alpha)
    config = resolve_config(model, online=online, base=base)
    build = lambda: build_from_config(config)  # noqa: E731
    reports = params_table(build, regimes, options, parse_dtype(dtype), shard)
    comparisons = []
    if {"ln", *LORA_READINGS.values()} <= set(regimes):  # the default: every preset
        comparisons = lora_readings(build, lora_rank, {r.regime: r for r in reports})
    if as_json:
        record = {"model": model, "reports": [r.as_dict() for r in reports], "provenance": provenance()}
        if comparisons:
            record["ln_vs_lora"] = [c.as_dict() for c in comparisons]
        typer.echo(json.dumps(record, indent=2))
        return
    total = reports[0].total
    table = Table(title=f"{model}: trainable parameters ({total:,} in all, vision tower included)")
    table.add_column("regime")
    table.add_column("trainable", justify="right")
    table.add_column("%", justify="right")
    shown = [g for g in GROUPS if any(r.by_group[g] for r in reports)]
    for group in shown:
        table.add_column(group, justify="right")
    for r in reports:
        table.add_row(
            r.regime, f"{r.trainable:,}", f"{r.percent:.4f}", *(_short(r.by_group[g]) for g in shown)
        )
    console.print(table)
    mem = Table(title=f"training memory estimate, GiB ({dtype} weights; activations excluded)")
    for col in ("regime", "frozen weights", "trainable fp32", "gradients", "AdamW", "total"):
        mem.add_column(col, justify="left" if col == "regime" else "right")
    for r in reports:
        m = r.memory
        mem.add_row(
            r.regime, *map(_gib, (m.frozen_weights, m.trainable_weights, m.gradients, m.optimizer, m.total))
        )
    console.print(mem)
    if shard > 1:
        console.print(_sharded_table(reports, shard, dtype))
    if comparisons:
        console.print(_comparison_table(comparisons))


def _sharded_table(reports, shard: int, dtype: str) -> Table:
    """Per-process memory with the training state sharded (lnprobe.params.ShardedEstimate)."""
    table = Table(
        title=f"per process with --shard fsdp over {shard} processes, GiB (state / {shard} + gathered units: "
        f"the root and 2 x the largest layer in {dtype}; activations excluded)"
    )
    for col in ("regime", "sharded state", "gathered units", "total"):
        table.add_column(col, justify="left" if col == "regime" else "right")
    for r in reports:
        s = r.sharded
        table.add_row(r.regime, *map(_gib, (s.state, s.gathered, s.total)))
    return table


def _comparison_table(comparisons) -> Table:
    """LN vs LoRA under each reading, and the LoRA rank that gives the paper's figure."""
    first = comparisons[0]
    table = Table(
        title=f"LN vs LoRA (rank {first.rank}) under each reading of the paper's LoRA; the paper reports "
        f"{first.target_pct:+.1f} % at 13B"
    )
    for col in ("reading", "LoRA regime", "ln", "LoRA", "ln vs LoRA", f"rank for {first.target_pct:+.1f} %"):
        table.add_column(col, justify="left" if col in ("reading", "LoRA regime") else "right")
    for c in comparisons:
        match = (
            f"{c.matching_rank} ({c.solved_rank:.1f}): {c.matching_pct:+.1f} %"
            if c.matching_rank is not None
            else "none (below rank 1)"
        )
        table.add_row(c.reading, c.lora_regime, f"{c.ln:,}", f"{c.lora:,}", f"{c.pct:+.1f} %", match)
    return table


@app.command()
def regimes() -> None:
    """List the training regimes: presets, and the atoms they are made of (compose atoms with '+')."""
    from lnprobe.regimes import ATOMS, REGIMES

    table = Table(title="regimes (presets)")
    table.add_column("name")
    table.add_column("atoms")
    table.add_column("trains")
    for name in REGIMES:
        preset = REGIMES.get(name)
        table.add_row(name, "+".join(preset.atoms), preset.summary)
    console.print(table)
    atoms = Table(title="atoms (write a regime as atoms joined by '+', e.g. lora+connector+embed+head)")
    atoms.add_column("atom")
    atoms.add_column("trains")
    for name in ATOMS:
        atom = ATOMS.get(name)
        note = " (combines with no other atom)" if atom.alone else ""
        atoms.add_row(name, atom.summary + note)
    console.print(atoms)


@app.command()
def sites(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    base: BaseOpt = None,
    online: OnlineOpt = False,
) -> None:
    """Show where the decoder layers, norms, connector, embeddings, head and vision tower live."""
    from lnprobe.models import build_from_config, resolve_config, resolve_sites

    found = resolve_sites(build_from_config(resolve_config(model, online=online, base=base)))
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2))
        return
    table = Table(title=f"{model}: sites ({found.model_type}, {found.num_layers} decoder layers)")
    table.add_column("site")
    table.add_column("module(s)")
    for key, value in found.as_dict().items():
        if isinstance(value, tuple):
            flat = [v for item in value for v in (item if isinstance(item, tuple) else (item,))]
            value = f"{flat[0]} … ({len(flat)})" if len(flat) > 1 else (flat[0] if flat else "-")
        table.add_row(key, str(value))
    console.print(table)


@app.command()
@config_command(
    TinyConfig,
    extra={
        "out": (
            Annotated[Path, typer.Argument(help="Directory to write the tiny checkpoint to.", metavar="OUT")],
            REQUIRED,
        ),
        "part": (
            Annotated[
                str,
                typer.Option(help="llava (whole model), lm (text-only LM) or vision (CLIP), for `assemble`."),
            ],
            "llava",
        ),
        "force": (Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")], False),
    },
)
def tiny(cfg: TinyConfig, out: Path, part: str, force: bool) -> None:
    """Build a tiny LLaVA model (or its text LM / vision part) from a config (no download) and save it."""
    from lnprobe.models.tiny import PARTS, save_tiny_part

    if part not in PARTS:
        raise InputError(f"--part: unknown part {part!r} (known: {', '.join(PARTS)})")
    save_tiny_part(out, cfg, part, overwrite=force)
    what = {
        "llava": f"{cfg.lm} LLaVA ({cfg.connector} connector)",
        "lm": f"{cfg.lm} text LM",
        "vision": "CLIP vision model",
    }
    console.print(f"wrote tiny {what[part]} to {out}")


@app.command("assemble")
@config_command(AssembleConfig, defaults={"llm": "", "vision": "", "out": "runs/assembled"})
def assemble_command(cfg: AssembleConfig) -> None:
    """Build a LLaVA checkpoint from a text LLM and a vision encoder (fresh connector, `<image>` token)."""
    from lnprobe.models.assemble import assemble

    path = assemble(cfg)
    console.print(
        f"wrote {path} (LLaVA: {cfg.llm} + {cfg.vision}, {cfg.connector} connector, seed {cfg.seed})"
    )


@app.command("export")
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
