"""`lnprobe similarity`, `gradvar`, `lnshift`, `patch`, `linprobe`, `attention`, `forgetting` and `claims`:
the probes on the command line, each generated from its config (a probe's shared `ProbeInputs` flattened
into `--data`, `--n`, `--batch-size`, ...)."""

from __future__ import annotations

from pathlib import Path

from lnprobe.claims.config import ClaimsConfig
from lnprobe.cli.core import app, console
from lnprobe.cli.options import config_command
from lnprobe.probes.attention.config import AttentionConfig
from lnprobe.probes.forgetting.config import ForgettingConfig
from lnprobe.probes.gradvar.config import GradVarConfig
from lnprobe.probes.linprobe.config import LinprobeConfig
from lnprobe.probes.lnshift.config import LnShiftConfig
from lnprobe.probes.patch.config import PatchConfig
from lnprobe.probes.similarity.config import SimilarityConfig


@app.command("similarity")
@config_command(
    SimilarityConfig,
    defaults={"out": "runs/similarity", "data": "", "n": 64, "batch_size": 8},
    helps={
        "data": "LLaVA JSON/JSONL inputs (the same for both checkpoints).",
        "n": "Examples.",
        "batch_size": "Examples per minibatch.",
        "seed": "Seed for example order and row sampling.",
    },
)
def similarity_command(cfg: SimilarityConfig) -> None:
    """Layer x layer representation similarity within one checkpoint or between two, with 95% intervals."""
    from lnprobe.probes import PROBES

    if cfg.tokens == "all" and _has_images(cfg.inputs.data):
        console.print(
            "warning: --tokens all mixes image and text tokens, whose split dominates linear CKA (every "
            "layer pair near 1); --tokens text or image compares like with like"
        )
    record = PROBES.get("similarity").run(cfg)
    for name, entry in record.metrics.items():
        summary = record.summary(name)
        if summary:
            lo, hi = summary["ci95"]
            ci = f" (95% CI {lo:.4f} to {hi:.4f})" if lo is not None else ""
            kind = "cross-layer mean" if "cross_layer_mean" in entry else "diagonal mean"
            console.print(f"{name}: {kind} {summary['value']:.4f}{ci}")
    if record.rectangular:
        console.print("the checkpoints have different numbers of sites: the matrix is rectangular")
    _say_sinks(record.sink_tokens, "similarity.json")
    console.print(f"wrote {Path(cfg.out)}/similarity.json, .npz and heatmaps")


def _say_sinks(found: dict | None, file: str) -> None:
    """One line on the massive-activation (sink) tokens a probe met, when it met any."""
    if found and found["count"]:
        what = "left out" if found["excluded"] else "found and kept (--keep-sink-tokens)"
        positions = sorted({t["position"] for t in found["tokens"]})
        at = ", ".join(map(str, positions[:5])) + (", ..." if len(positions) > 5 else "")
        console.print(
            f"{found['count']} massive-activation (sink) tokens {what}, at position(s) {at} "
            f"(norm > {found['factor']:g} x the example's median; listed under sink_tokens in {file})"
        )


def _has_images(data: str) -> bool:
    """Does any record of the LLaVA data file name an image? (False when it cannot be read: the probe
    itself reports that.)"""
    from lnprobe.data.llava import read_records
    from lnprobe.errors import InputError

    try:
        return any(r.image for r in read_records(data))
    except (InputError, OSError):
        return False


@app.command("gradvar")
@config_command(GradVarConfig, defaults={"out": "runs/gradvar", "data": ""})
def gradvar_command(cfg: GradVarConfig) -> None:
    """Gradient variance per layer and parameter group on fixed, seeded data (nothing is updated)."""
    from lnprobe.probes import PROBES

    record = PROBES.get("gradvar").run(cfg)
    for kind, s in record.kinds.items():
        ci = s["variance_ci95"]
        ci_text = f" (95% CI {ci[0]:.3e} to {ci[1]:.3e})" if ci else ""
        console.print(f"{kind}: variance {s['variance']:.3e}{ci_text}, noise scale {s['noise_scale']:.3g}")
    console.print(f"wrote {Path(cfg.out)}/gradvar.json, gradvar.csv and figures ({record.samples} samples)")


@app.command("lnshift")
@config_command(LnShiftConfig, defaults={"out": "runs/lnshift", "data": "", "base": ""})
def lnshift_command(cfg: LnShiftConfig) -> None:
    """How tuning moved each norm, and the image-vs-text gap before and after each norm, base vs tuned."""
    from lnprobe.probes import PROBES

    record = PROBES.get("lnshift").run(cfg)
    s = record.summary
    if record.no_norm_changed:
        console.print(f"no norm changed between {cfg.ckpt} and {cfg.base} (result flagged no_norm_changed)")
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
    _say_sinks(record.sink_tokens, "lnshift.json")
    console.print(f"wrote {Path(cfg.out)}/lnshift.json, CSV tables and figures")


@app.command("patch")
@config_command(PatchConfig, defaults={"out": "runs/patch", "data": "", "base": "", "tuned": ""})
def patch_command(cfg: PatchConfig) -> None:
    """Which norms carry the adaptation: tuned norms patched into the base, base norms into the tuned."""
    from lnprobe.probes import PROBES

    record = PROBES.get("patch").run(cfg)
    console.print(
        f"loss: base {record.losses['base']:.4f}, tuned {record.losses['tuned']:.4f}; answer accuracy: "
        f"base {record.accuracy['base']:.3f}, tuned {record.accuracy['tuned']:.3f} "
        f"({record.examples} examples, {record.forward_passes} passes, {record.seconds:.1f} s)"
    )
    s = record.summary
    if not s["defined"]:
        console.print("base and tuned have the same loss: the fractions are undefined (reported as null)")
    elif s["best_unit"] is not None:
        console.print(f"most recovered by one norm: {s['best_unit']} ({s['best_recovered']:.3f})")
    console.print(f"wrote {Path(cfg.out)}/patch.json, patch.csv and figures")


@app.command("linprobe")
@config_command(LinprobeConfig, defaults={"out": "runs/linprobe", "data": ""})
def linprobe_command(cfg: LinprobeConfig) -> None:
    """Linear probes per layer and model (image vs text token, image attributes) and PCA views."""
    from lnprobe.probes import PROBES

    record = PROBES.get("linprobe").run(cfg)
    for note in record.notes:
        console.print(note)
    for best in record.summary.values():
        lo, hi = best["ci95"]
        console.print(
            f"{best['model']} {best['probe']}: best {best['accuracy']:.3f} (95% CI {lo:.3f} to {hi:.3f}; "
            f"chance {best['chance']:.3f}) at layer {best['layer']} {best['site']}"
        )
    _say_sinks(record.sink_tokens, "linprobe.json")
    console.print(f"wrote {Path(cfg.out)}/linprobe.json, linprobe.csv and figures ({record.seconds:.1f} s)")


@app.command("attention")
@config_command(AttentionConfig, defaults={"out": "runs/attention", "data": "", "models": ()})
def attention_command(cfg: AttentionConfig) -> None:
    """Share of text tokens' attention on image tokens per layer and head, per model and vs the first."""
    from lnprobe.probes import PROBES

    record = PROBES.get("attention").run(cfg)
    for label, m in record.models.items():
        lo, hi = m["mean"]["ci95"]
        console.print(
            f"{label}: mean share on image tokens {m['mean']['value']:.4f} (95% CI {lo:.4f} to {hi:.4f})"
        )
    for name, d in record.differences.items():
        lo, hi = d["mean"]["ci95"]
        console.print(f"{name}: {d['mean']['value']:+.4f} (95% CI {lo:+.4f} to {hi:+.4f})")
    left = f", {record.without_image} without image tokens left out" if record.without_image else ""
    console.print(
        f"wrote {Path(cfg.out)}/attention.json, attention.csv and heatmaps ({record.examples} examples{left})"
    )


@app.command("forgetting")
@config_command(ForgettingConfig, defaults={"out": "runs/forgetting"})
def forgetting_command(cfg: ForgettingConfig) -> None:
    """Held-out text loss and next-token accuracy of BASE and TUNED: what finetuning cost the LLM."""
    from lnprobe.probes import PROBES

    s = PROBES.get("forgetting").run(cfg).summary
    console.print(
        f"text loss {s['loss_before']:.2f} -> {s['loss_after']:.2f} nats/token "
        f"(change {_change(s['loss_change'], '.2f')}), next-token accuracy {s['accuracy_before']:.2f} -> "
        f"{s['accuracy_after']:.2f} (change {_change(s['accuracy_change'], '.3f')})",
        soft_wrap=True,
    )
    console.print(
        f"wrote {Path(cfg.out)}/forgetting.json ({s['n']} windows, {s['tokens']} tokens; perplexity ratio "
        f"{_change(s['perplexity_ratio'], '.3f', sign='')})",
        soft_wrap=True,
    )


def _change(c: dict, fmt: str, sign: str = "+") -> str:
    """`+0.14 [0.11, 0.17]` of a {value, ci95} (no interval from one window)."""
    lo, hi = c["ci95"]
    ci = f" [{lo:{fmt}}, {hi:{fmt}}]" if lo is not None else " (no interval: one window)"
    return f"{c['value']:{sign}{fmt}}{ci}"


@app.command("claims")
@config_command(ClaimsConfig, defaults={"out": "runs/claims", "base": "", "ln": (), "full": (), "data": ""})
def claims_command(cfg: ClaimsConfig) -> None:
    """Judge the paper's three mechanism claims (similarity, gradient variance, domain adaptation)."""
    from lnprobe.claims.run import run_claims

    record = run_claims(cfg)
    for claim in record["claims"]:
        console.print(f"{claim['statement']}: [bold]{claim['verdict']}[/bold]")
    console.print(f"wrote {Path(cfg.out)}/report.md, report.html and claims.json")
