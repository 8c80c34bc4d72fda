"""The embedded default experiment (`make demo`, `lnprobe demo`): a miniature of the paper's pipeline on CPU
with no download.

1. synthetic shapes data (LLaVA format + images);
2. a multi-modal model assembled from a tiny text LLM and a tiny CLIP (`lnprobe assemble`, linear
   connector as in the paper);
3. text pre-training of the LLM on the text corpus (`full` regime, `plain` template: the whole text is the
   target; images never appear), then connector pre-training on captions (`connector` regime), each merged
   into a checkpoint;
4. finetuning on the instructions with `ln`, `ln-simp`, `full` and `lora`, each at the best of four
   learning rates (a sweep, lowest held-out loss), gradient statistics recorded every few steps;
5. answer accuracy on the held-out questions for the pre-trained base and each regime;
6. `lnprobe claims` on base / ln / full (lora and ln-simp as extra models), report under OUT/claims.

Seeded throughout: two runs give the same numbers; a second run reuses what the first wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.errors import InputError
from lnprobe.io import Output, make_parents, write_marker
from lnprobe.models import TinyConfig
from lnprobe.train import TrainConfig, train

# Pre-training learning rates (stated); finetuning learning rates are chosen per regime by a sweep over
# SWEEP_LRS (lowest held-out loss).
LRS = {"text": 3e-3, "connector": 1e-2}
SWEEP_LRS = (3e-2, 1e-2, 3e-3, 1e-3)
FINETUNE = ("ln", "ln-simp", "full", "lora")


def run_demo(
    out: Path,
    steps: int = 30,
    console: Console | None = None,
    seed: int = 0,
    n_eval: int = 16,
    lrs: tuple[float, ...] = SWEEP_LRS,
) -> dict:
    console = console or Console()
    if steps < 1:
        raise InputError(f"--steps {steps}: must be >= 1")
    _claim(Path(out))
    stages = ["data", "assemble", "text", "connector", "sweep", "accuracy", "claims"]
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("demo", total=len(stages))

        def stage(name: str) -> None:
            progress.update(task, description=f"demo: {name}")

        stage("data")
        data = _data(out, seed)
        progress.advance(task)
        stage("assemble")
        assembled = _assemble(out, seed)
        progress.advance(task)
        stage("text pre-training")
        text = _pretrain(out, "text", assembled, "full", data / "text.jsonl", 4 * steps, seed)
        progress.advance(task)
        stage("connector pre-training")
        base = _pretrain(out, "connector", text, "connector", data / "pretrain.json", steps, seed)
        progress.advance(task)
        stage(f"finetuning sweep ({len(FINETUNE)} regimes x {len(lrs)} learning rates)")
        results = _sweep(out, base, data, steps, seed, lrs)
        progress.advance(task)
        stage("accuracy")
        accuracy = _accuracy(base, results, data)
        progress.advance(task)
        stage("claims")
        claims = _claims(out, base, results, data, seed, n_eval)
        progress.advance(task)
    rows = _rows(base, results, accuracy, claims)
    (out / "demo_results.json").write_text(json.dumps(rows, indent=2) + "\n")
    _paper_params(out)
    _print(rows, console)
    console.print(
        f"report: {out / 'claims' / 'report.html'} (and report.md); results: {out / 'demo_results.json'}"
    )
    return {"rows": rows, "claims": [(c["id"], c["verdict"]) for c in claims["claims"]]}


def _claim(out: Path) -> None:
    """A new demo directory (marked as the demo's), or an earlier demo's to reuse; nothing else."""
    if out.exists():
        Output(out, "demo", force=True).check()
        return
    Output(out, "demo").check()
    make_parents(out)
    write_marker(out, "demo")


def _data(out: Path, seed: int) -> Path:
    data = out / "data"
    if not (data / "instruct.json").is_file():
        write_synth(data, SynthConfig(n=160, seed=seed))
    return data


def _assemble(out: Path, seed: int) -> Path:
    from lnprobe.models.assemble import AssembleConfig, assemble
    from lnprobe.models.tiny import save_tiny_part

    target = out / "assembled"
    if not (target / "config.json").is_file():
        cfg = TinyConfig(seed=seed)
        for part in ("lm", "vision"):
            save_tiny_part(out / f"tiny-{part}", cfg, part, overwrite=True)
        assemble(AssembleConfig(llm=str(out / "tiny-lm"), vision=str(out / "tiny-vision"), out=str(target),
                                connector="linear", seed=seed, force=True))  # fmt: skip
    return target


def _train(out: Path, name: str, model: Path, regime: str, data: Path, steps: int, seed: int, **kw):
    """Run (or resume, or reuse) training stage `name` under OUT/runs/NAME with learning rate LRS[name]."""
    run = out / "runs" / name
    config = TrainConfig(**{
        "model": str(model), "regime": regime, "data": str(data), "out": str(run), "max_steps": steps,
        "lr": LRS[name], "batch_size": 8, "warmup_ratio": 0.1, "seed": seed, "progress": False,
        "resume": str(run) if (run / "latest").is_file() else None, **kw,
    })  # fmt: skip
    return run, train(config)


def _pretrain(out: Path, stage: str, model: Path, regime: str, data: Path, steps: int, seed: int) -> Path:
    """A pre-training stage (`plain` template), merged into a full checkpoint: the next stage's base."""
    from transformers.utils import logging as hf_logging

    from lnprobe.models import load

    merged = out / f"{stage}-pretrained"
    if (merged / "config.json").is_file():
        return merged
    _, result = _train(out, stage, model, regime, data, steps, seed, template="plain", batch_size=16)
    loaded = load(result.checkpoint)
    hf_logging.disable_progress_bar()
    try:
        loaded.model.save_pretrained(merged)
    finally:
        hf_logging.enable_progress_bar()
    loaded.processor.save_pretrained(merged)
    return merged


def _sweep(out: Path, base: Path, data: Path, steps: int, seed: int, lrs: tuple[float, ...]) -> dict:
    """Finetune every regime at every learning rate of SWEEP_LRS (gradient statistics recorded); keep,
    per regime, the run with the lowest held-out loss."""
    from lnprobe.train.state import latest_checkpoint
    from lnprobe.train.sweep import best_lrs, plan, run_sweep

    config = TrainConfig(
        model=str(base), data=str(data / "instruct.json"), eval_data=str(data / "eval.json"), max_steps=steps,
        batch_size=8, warmup_ratio=0.1, seed=seed, progress=False, gradvar_every=max(1, steps // 6),
    )  # fmt: skip
    runs = plan(config, out / "sweep", list(FINETUNE), list(lrs), [seed])
    rows = run_sweep(config, out / "sweep", runs)
    results = {}
    for regime, best in best_lrs(rows).items():
        row = next(r for r in rows if r["regime"] == regime and r["lr"] == best["lr"])
        run = Path(row["run"])
        first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        results[regime] = {"run": str(run), "checkpoint": str(latest_checkpoint(run)), "lr": best["lr"],
                           "eval_before": first["eval_loss"], "eval_after": row["eval_loss"]}  # fmt: skip
    return results


def _accuracy(base: Path, results: dict, data: Path) -> dict:
    from lnprobe.evaluate import answer_accuracy
    from lnprobe.models import load

    out = {}
    for name, spec in {"pretrained": str(base), **{r: v["checkpoint"] for r, v in results.items()}}.items():
        loaded = load(spec)
        out[name] = answer_accuracy(loaded.model, loaded.processor, str(data / "eval.json"))["accuracy"]
    return out


def _claims(out: Path, base: Path, results: dict, data: Path, seed: int, n: int) -> dict:
    from lnprobe.claims import ClaimsConfig, run_claims

    path = out / "claims" / "claims.json"
    if path.is_file():
        return json.loads(path.read_text())
    cfg = ClaimsConfig(
        base=str(base), ln=results["ln"]["checkpoint"], full=results["full"]["checkpoint"],
        others={r: results[r]["checkpoint"] for r in ("lora", "ln-simp")}, data=str(data / "eval.json"),
        out=str(out / "claims"), ln_runs=(results["ln"]["run"],), full_runs=(results["full"]["run"],), n=n,
        batch_size=4, seed=seed, bootstrap=100, progress=False,
    )  # fmt: skip
    return run_claims(cfg)


def _rows(base: Path, results: dict, accuracy: dict, claims: dict) -> list[dict]:
    from lnprobe.models import build_from_config, resolve_config
    from lnprobe.params import regime_report

    sims = claims["similarity"]
    grads = claims["gradients"]
    rows = [{"regime": "pretrained (connector only)", "trainable_pct": None,
             "accuracy": accuracy["pretrained"], "cross_layer_cka": sims["base"]["cka"]["value"],
             "norm_grad_variance": None, "eval_loss": None}]  # fmt: skip
    for regime, r in results.items():
        pct = regime_report(build_from_config(resolve_config(str(base))), regime).percent
        rows.append(
            {
                "regime": regime,
                "lr": r["lr"],
                "trainable_pct": pct,
                "accuracy": accuracy[regime],
                "cross_layer_cka": sims[regime]["cka"]["value"],
                "norm_grad_variance": grads.get(regime, {}).get("variance"),
                "eval_loss": r["eval_after"],
                "eval_loss_before": r["eval_before"],
                "checkpoint": r["checkpoint"],
            }
        )
    return rows


def _print(rows: list[dict], console: Console) -> None:
    table = Table(title="paper miniature: tiny LLaVA on the synthetic shapes task")
    cols = (
        "regime",
        "lr",
        "trainable %",
        "accuracy",
        "cross-layer CKA",
        "norm-grad variance",
        "held-out loss",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "regime" else "right")

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    for r in rows:
        table.add_row(
            r["regime"], f(r.get("lr"), "g"), f(r["trainable_pct"], ".3f"), f(r["accuracy"], ".3f"),
            f(r["cross_layer_cka"], ".3f"), f(r["norm_grad_variance"], ".2e"), f(r["eval_loss"], ".3f"),
        )  # fmt: skip
    console.print(table)


def _paper_params(out: Path) -> None:
    """Trainable parameters and memory estimate of every regime at the paper's LLaVA-7B shapes (meta device,
    no weights), for `analyses/fig_params_memory.py`."""
    from lnprobe.models import build_from_config, resolve_config
    from lnprobe.params import regime_report
    from lnprobe.regimes import REGIMES

    path = out / "params_llava-7b.json"
    if not path.is_file():
        config = resolve_config("llava-7b")
        rows = [regime_report(build_from_config(config), r).as_dict() for r in REGIMES.names()]
        path.write_text(json.dumps({"model": "llava-7b", "regimes": rows}, indent=2) + "\n")
