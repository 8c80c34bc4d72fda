"""`lnprobe similarity`, `gradvar`, `lnshift` and `claims`: the probes on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lnprobe.cli.core import app, console
from lnprobe.errors import InputError

Ckpt = Annotated[str, typer.Argument(help="Checkpoint (any load() spec).")]
Data = Annotated[str, typer.Option(help="LLaVA JSON/JSONL inputs (seeded subset).")]
N = Annotated[int, typer.Option("--n", help="Examples (the first n of a seeded order).")]
Batch = Annotated[int, typer.Option(help="Examples per forward pass.")]
Template = Annotated[str, typer.Option(help="Chat template for the data.")]
Images = Annotated[str | None, typer.Option(help="Image folder (default: the data file's).")]
Seed = Annotated[int, typer.Option(help="Seed for the example order.")]
Device = Annotated[str, typer.Option(help="cpu or cuda.")]
Force = Annotated[
    bool, typer.Option("--force", help="Replace an earlier output of this command at --out (nothing else).")
]


@app.command("gradvar")
def gradvar_command(
    ckpt: Ckpt,
    data: Data = "",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/gradvar"),
    n: N = 32,
    batch_size: Batch = 4,
    unit: Annotated[str, typer.Option(help="example (per-example gradients) or batch.")] = "example",
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="norms, attn, mlp, connector, embeddings, head, lora."),
    ] = None,
    activations: Annotated[
        bool, typer.Option(help="Also the variance of activation gradients at each layer output.")
    ] = False,
    template: Template = "vicuna_v1",
    image_folder: Images = None,
    seed: Seed = 0,
    device: Device = "cpu",
    force: Force = False,
) -> None:
    """Gradient variance per layer and parameter group on fixed, seeded data (nothing is updated)."""
    from lnprobe.probes import PROBES
    from lnprobe.probes.gradvar.config import GradVarConfig

    cfg = GradVarConfig(
        ckpt=ckpt,
        inputs=_inputs(data, n, batch_size, template, image_folder, seed, device),
        out=str(out),
        unit=unit,
        groups=tuple(group or ("norms", "attn", "mlp")),
        activations=activations,
        force=force,
    )
    record = PROBES.get("gradvar").run(cfg)
    for kind, s in record.kinds.items():
        ci = s["variance_ci95"]
        ci_text = f" (95% CI {ci[0]:.3e} to {ci[1]:.3e})" if ci else ""
        console.print(f"{kind}: variance {s['variance']:.3e}{ci_text}, noise scale {s['noise_scale']:.3g}")
    console.print(f"wrote {out}/gradvar.json, gradvar.csv and figures ({record.samples} samples)")


@app.command("lnshift")
def lnshift_command(
    ckpt: Ckpt,
    base: Annotated[str, typer.Option(help="The base checkpoint the tuned one started from.")] = "",
    data: Data = "",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/lnshift"),
    n: N = 32,
    batch_size: Batch = 4,
    modality_split: Annotated[
        bool, typer.Option(help="Split activation statistics into image and text tokens.")
    ] = True,
    outlier_factor: Annotated[
        float, typer.Option(help="Outlier dimension: max |x| above this many times the RMS.")
    ] = 6.0,
    template: Template = "vicuna_v1",
    image_folder: Images = None,
    seed: Seed = 0,
    device: Device = "cpu",
    force: Force = False,
) -> None:
    """How tuning moved each norm, and the image-vs-text gap before and after each norm, base vs tuned."""
    from lnprobe.probes import PROBES
    from lnprobe.probes.lnshift.config import LnShiftConfig

    if not base:
        raise InputError("--base is required (the checkpoint the tuned one started from)")
    cfg = LnShiftConfig(
        ckpt=ckpt,
        base=base,
        inputs=_inputs(data, n, batch_size, template, image_folder, seed, device),
        out=str(out),
        modality_split=modality_split,
        outlier_factor=outlier_factor,
        force=force,
    )
    record = PROBES.get("lnshift").run(cfg)
    s = record.summary
    if record.no_norm_changed:
        console.print(f"no norm changed between {ckpt} and {base} (result flagged no_norm_changed)")
    else:
        console.print(
            f"{s['changed']} of {s['norm_tensors']} norm tensors changed; "
            f"mean relative L2 change {s['mean_rel_l2_changed']:.4f}"
        )
    for which in ("base", "tuned"):
        if f"gap_{which}_in" in s:
            console.print(
                f"{which}: image-vs-text gap {s[f'gap_{which}_in']:.4f} before the norms, "
                f"{s[f'gap_{which}_out']:.4f} after"
            )
    console.print(f"wrote {out}/lnshift.json, CSV tables and figures")


@app.command("claims")
def claims_command(
    base: Annotated[str, typer.Option(help="The base model the others were tuned from.")] = "",
    ln: Annotated[list[str] | None, typer.Option(help="LN-tuned checkpoint(s), one per seed.")] = None,
    full: Annotated[
        list[str] | None, typer.Option(help="Fully-finetuned checkpoint(s), one per seed.")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="More checkpoints as NAME=SPEC (e.g. lora=DIR).")
    ] = None,
    data: Data = "",
    out: Annotated[Path, typer.Option(help="Output directory (report.md/.html, claims.json).")] = Path(
        "runs/claims"
    ),
    ln_run: Annotated[
        list[str] | None, typer.Option(help="LN training run(s) with gradient traces, one per --ln.")
    ] = None,
    full_run: Annotated[
        list[str] | None, typer.Option(help="Full-FT training run(s) with gradient traces, one per --full.")
    ] = None,
    n: N = 32,
    batch_size: Batch = 8,
    tokens: Annotated[
        str,
        typer.Option(
            help="Rows for the similarity claim: text (default; image tokens' scale dominates), all, ..."
        ),
    ] = "text",
    template: Template = "vicuna_v1",
    image_folder: Images = None,
    seed: Seed = 0,
    device: Device = "cpu",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap draws for the 95% intervals.")] = 200,
    force: Force = False,
) -> None:
    """Judge the paper's three mechanism claims (similarity, gradient variance, domain adaptation)."""
    from lnprobe.claims import ClaimsConfig, run_claims

    if not (base and ln and full and data):
        raise InputError("--base, --ln, --full and --data are required")
    others = {}
    for item in model or []:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise InputError(f"--model {item!r}: expected NAME=SPEC")
        others[name] = spec
    cfg = ClaimsConfig(
        base=base, ln=tuple(ln), full=tuple(full), others=others, data=data, out=str(out),
        ln_runs=tuple(ln_run or ()), full_runs=tuple(full_run or ()),
        n=n, batch_size=batch_size, tokens=tokens, template=template, image_folder=image_folder, seed=seed,
        device=device, bootstrap=bootstrap, force=force,
    )  # fmt: skip
    record = run_claims(cfg)
    for claim in record["claims"]:
        console.print(f"{claim['statement']}: [bold]{claim['verdict']}[/bold]")
    console.print(f"wrote {out}/report.md, report.html and claims.json")


def _inputs(data, n, batch_size, template, image_folder, seed, device):
    from lnprobe.probes import ProbeInputs

    return ProbeInputs(
        data=data,
        n=n,
        batch_size=batch_size,
        template=template,
        image_folder=image_folder,
        seed=seed,
        device=device,
    )


@app.command("similarity")
def similarity_command(
    ckpt_a: Annotated[str, typer.Argument(help="Checkpoint (any load() spec).")],
    ckpt_b: Annotated[
        str | None, typer.Argument(help="Second checkpoint (omit: cross-layer within A).")
    ] = None,
    data: Annotated[str, typer.Option(help="LLaVA JSON/JSONL inputs (the same for both checkpoints).")] = "",
    out: Annotated[Path, typer.Option(help="Output directory (similarity.json/.npz, PNG and HTML).")] = Path(
        "runs/similarity"
    ),
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="cka, cka_biased, rbf_cka, cosine.")
    ] = None,
    site: Annotated[
        list[str] | None, typer.Option("--site", "-s", help="Site glob(s), e.g. 'layer.*'.")
    ] = None,
    tokens: Annotated[str, typer.Option(help="all, image, text, answer, mean, last.")] = "all",
    n: Annotated[int, typer.Option("--n", help="Examples.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Examples per minibatch.")] = 8,
    max_rows: Annotated[int, typer.Option(help="Rows (tokens) per minibatch, sampled when more.")] = 512,
    template: Annotated[str, typer.Option(help="Chat template for the data.")] = "vicuna_v1",
    image_folder: Annotated[str | None, typer.Option(help="Image folder (default: the data's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for example order and row sampling.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap draws for the 95% intervals.")] = 200,
    save_activations: Annotated[
        str | None, typer.Option(help="Also write the captured rows (safetensors shards) here, for reuse.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier `lnprobe similarity` output (nothing else).")
    ] = False,
) -> None:
    """Layer x layer representation similarity within one checkpoint or between two, with 95% intervals."""
    from lnprobe.probes import PROBES
    from lnprobe.probes.similarity.config import SimilarityConfig

    cfg = SimilarityConfig(
        a=ckpt_a,
        b=ckpt_b,
        inputs=_inputs(data, n, batch_size, template, image_folder, seed, device),
        out=str(out),
        metrics=tuple(metric or ("cka", "cosine")),
        sites=tuple(site or ("layer.*",)),
        tokens=tokens,
        max_rows=max_rows,
        bootstrap=bootstrap,
        save_activations=save_activations,
        force=force,
    )
    record = PROBES.get("similarity").run(cfg)
    for name, entry in record.metrics.items():
        summary = entry.get("cross_layer_mean") or entry.get("diagonal_mean")
        if summary:
            lo, hi = summary["ci95"]
            ci = f" (95% CI {lo:.4f} to {hi:.4f})" if lo is not None else ""
            kind = "cross-layer mean" if "cross_layer_mean" in entry else "diagonal mean"
            console.print(f"{name}: {kind} {summary['value']:.4f}{ci}")
    if record.rectangular:
        console.print("the checkpoints have different numbers of sites: the matrix is rectangular")
    console.print(f"wrote {out}/similarity.json, .npz and heatmaps")
