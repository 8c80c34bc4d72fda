"""`lnprobe eval`: benchmark evaluation on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lnprobe.cli.core import app, console
from lnprobe.errors import InputError


@app.command("eval")
def eval_command(
    ckpt: Annotated[
        str | None, typer.Argument(help="Checkpoint (any load() spec); omit with --predictions.")
    ] = None,
    bench: Annotated[str, typer.Option(help="pope, mme, vqav2, coco or flickr30k.")] = "",
    data: Annotated[str, typer.Option(help="The benchmark's official files (folder; see README).")] = "",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/eval"),
    images: Annotated[
        str | None, typer.Option(help="Image folder (default: the benchmark's folder under --data).")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Chat template (default: the training run's, else vicuna_v1).")
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option(help="Human turn after the image; {question} is replaced (default: LLaVA-1.5's)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per generate call (left-padded).")] = 8,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Default: 16 (short answers), 48 (captions).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score only the first N items.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str | None, typer.Option(help="fp32, bf16 or fp16 (default: the checkpoint's).")] = None,
    online: Annotated[bool, typer.Option("--online", help="Allow downloading a hub id.")] = False,
    predictions: Annotated[
        str | None,
        typer.Option(
            help="Score these answers instead of generating (results.json, VQA/COCO results, JSONL)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Answer a benchmark greedily and score it as its official tools do (per-item predictions kept)."""
    from lnprobe.eval.bench import BENCHES
    from lnprobe.eval.run import EvalConfig, run_eval

    if not bench or not data:
        raise InputError(f"--bench ({', '.join(BENCHES.names())}) and --data are required")
    cfg = EvalConfig(
        ckpt=ckpt, bench=bench, data=data, out=str(out), images=images, template=template, prompt=prompt,
        batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit, device=device, dtype=dtype,
        online=online, predictions=predictions, force=force,
    )  # fmt: skip
    record = run_eval(cfg)
    scores = record["scores"]
    shown = ", ".join(f"{k} {_fmt(scores[k])}" for k in BENCHES.get(bench).headline)
    console.print(f"{bench}: {shown} ({len(record['items'])} items)")
    console.print(f"wrote {out}/results.json")


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
