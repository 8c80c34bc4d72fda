"""The embedded default experiment (`make demo`, `lnprobe demo`), end to end on CPU with no download.

Today it runs the smallest real pipeline lnprobe has: build a tiny LLaVA model and save it → load it back
through `lnprobe.models.load()` → for every regime, apply it and take a few AdamW steps on a small
image-question-answer batch made from scikit-learn's bundled digits → save the `ln-simp` result as a delta
checkpoint and load it back → print the parameter table and each regime's loss before and after.
The full paper miniature (pre-training, finetuning, evaluation, claims report) replaces this as it lands.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import track
from rich.table import Table

from lnprobe.config import save_config
from lnprobe.models import TinyConfig, load, save_tiny
from lnprobe.models.delta import DeltaInfo, fingerprint, save_delta
from lnprobe.params import regime_report
from lnprobe.regimes import REGIMES, apply_regime

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digits_batch(processor, n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """`n` digit images (scikit-learn's bundled 8x8 digits, upscaled) with 'what digit?' Q&A text.
    Labels cover the answer and end-of-sequence tokens only."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(digits.images), size=n, replace=False)
    size = processor.image_processor.crop_size["height"]
    images = [
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize((size, size)).convert("RGB")
        for i in idx
    ]
    prompts = ["USER: <image>\nWhat digit is this? ASSISTANT:" for _ in idx]
    answers = [f" {_WORDS[digits.target[i]]}</s>" for i in idx]
    batch = processor(
        images=images,
        text=[p + a for p, a in zip(prompts, answers, strict=True)],
        return_tensors="pt",
        padding=True,
    )
    labels = torch.full_like(batch["input_ids"], -100)
    for row, answer in enumerate(answers):
        n_answer = len(processor.tokenizer(answer, add_special_tokens=False)["input_ids"])
        length = int(batch["attention_mask"][row].sum())  # right padding
        labels[row, length - n_answer : length] = batch["input_ids"][row, length - n_answer : length]
    batch["labels"] = labels
    return dict(batch)


def train_steps(model, batch, steps: int, lr: float) -> tuple[float, float]:
    """A few AdamW steps on one batch; returns (loss before, loss after)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps + 1):
        loss = model(**batch).loss
        losses.append(loss.item())
        if len(losses) > steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return losses[0], losses[-1]


def run_demo(out: Path, steps: int = 5, console: Console | None = None, seed: int = 0) -> dict:
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    base_dir = out / "tiny-base"
    save_tiny(base_dir, TinyConfig(seed=seed))
    base = load(base_dir)
    batch = digits_batch(base.processor, seed=seed)
    rows = []
    for regime in track(REGIMES.names(), description="regimes", console=console):
        torch.manual_seed(seed)
        report = regime_report(copy.deepcopy(base.model), regime, dtype=torch.float32)
        applied = apply_regime(copy.deepcopy(base.model), regime)
        before, after = train_steps(applied.model, batch, steps, lr=1e-2 if regime.startswith("ln") else 1e-3)
        rows.append(
            {
                "regime": regime,
                "trainable": report.trainable,
                "percent": report.percent,
                "loss_before": before,
                "loss_after": after,
            }
        )
        if regime == "ln-simp":
            tensors = {n: p for n, p in applied.model.named_parameters() if p.requires_grad}
            info = DeltaInfo(
                base=str(base_dir.resolve()), base_fingerprint=fingerprint(base_dir), regime=regime
            )
            save_delta(out / "ln-simp-delta", tensors, info, overwrite=True)
            reloaded = load(out / "ln-simp-delta").model
            torch.testing.assert_close(reloaded(**batch).loss.item(), after)  # the delta round-trips
    _print(rows, console)
    (out / "demo_results.json").write_text(json.dumps(rows, indent=2) + "\n")
    save_config(TinyConfig(seed=seed), out, steps=steps)
    console.print(f"results: {out / 'demo_results.json'}  (ln-simp delta: {out / 'ln-simp-delta'})")
    return {"rows": rows}


def _print(rows: list[dict], console: Console) -> None:
    table = Table(title="tiny LLaVA: regimes after a few steps on bundled digits")
    for col in ("regime", "trainable", "%", "loss before", "loss after"):
        table.add_column(col, justify="left" if col == "regime" else "right")
    for r in rows:
        table.add_row(
            r["regime"],
            f"{r['trainable']:,}",
            f"{r['percent']:.3f}",
            f"{r['loss_before']:.3f}",
            f"{r['loss_after']:.3f}",
        )
    console.print(table)
