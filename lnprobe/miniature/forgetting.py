"""The study's forgetting stage: what finetuning cost each regime's LLM on held-out text (the `forgetting`
probe's statistics, `lnprobe.probes.forgetting.stats`), the connector-pretrained base as "before".

The text is `text_eval` when given (a .txt / JSONL file, or `python-docs`), else the synthetic task's own
corpus (OUT/data/text.jsonl: chat lines about this seed's pictures, written in words; the shipped LLM was
pre-trained on another world's); with --data and no --text-eval there is none and the stage records that.
The base is scored once, then each regime's picked checkpoint on the same windows (one model in memory at a
time). Writes OUT/forgetting.json: {text, windows, max_length, regimes: {regime: compare()}}.
"""

from __future__ import annotations

import json
from pathlib import Path

WINDOWS = 64  # windows scored per model
MAX_LENGTH = 128  # tokens per window
BATCH = 16


def text_source(cfg, data: Path) -> str | None:
    """The held-out text this run scores (see the module docstring), or None."""
    if cfg.text_eval:
        return cfg.text_eval
    corpus = data / "text.jsonl"
    return str(corpus) if cfg.synthetic and corpus.is_file() else None


def forgetting(out: Path, cfg, base: Path, results: dict, data: Path, progress: bool = False) -> dict:
    """Run (or reuse) the stage; returns OUT/forgetting.json's record."""
    from lnprobe.probes.forgetting.stats import compare

    path = out / "forgetting.json"
    if path.is_file():
        return json.loads(path.read_text())
    text = text_source(cfg, data)
    record: dict = {"text": text, "windows": 0, "max_length": MAX_LENGTH, "regimes": {}}
    if text is not None:
        windows, (base_loss, base_acc) = _base_scores(base, text, cfg.seed, progress)
        record["windows"] = len(windows)
        for regime, r in results.items():
            loss, acc = _scores(r["checkpoint"], windows, progress, regime)
            record["regimes"][regime] = compare(base_loss, loss, base_acc, acc)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _base_scores(base: Path, text: str, seed: int, progress: bool):
    from lnprobe.models import load
    from lnprobe.probes.forgetting.run import text_windows

    loaded = load(str(base), dtype="fp32")
    windows = text_windows(loaded.processor, text, MAX_LENGTH, WINDOWS, seed)
    return windows, _losses(loaded, windows, progress, "base")


def _scores(spec: str, windows: list[list[int]], progress: bool, name: str):
    from lnprobe.models import load

    return _losses(load(str(spec), dtype="fp32"), windows, progress, name)


def _losses(loaded, windows: list[list[int]], progress: bool, name: str):
    from lnprobe.probes.forgetting.run import as_tokenizer, pad_id
    from lnprobe.probes.forgetting.stats import window_losses

    loaded.model.eval()
    pad = pad_id(as_tokenizer(loaded.processor))
    return window_losses(
        loaded.model, windows, BATCH, pad, progress=progress, description=f"text loss: {name}"
    )


def rows(record: dict | None) -> dict[str, dict]:
    """Per regime the numbers the results table shows: loss before / after, its change with interval."""
    if not record:
        return {}
    return {
        regime: {
            "text_loss_before": c["loss_before"],
            "text_loss_after": c["loss_after"],
            "text_loss_change": c["loss_change"]["value"],
            "text_loss_change_ci95": c["loss_change"]["ci95"],
            "next_token_accuracy_change": c["accuracy_change"]["value"],
        }
        for regime, c in record["regimes"].items()
    }
