"""`lnprobe eval`: read a benchmark's official files, generate answers greedily (or read answers made
elsewhere, `predictions`), score them, write
OUT/results.json (scores, every item with its prediction, the config, provenance) and
OUT/lnprobe_config.json; nothing is written when anything fails."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from lnprobe.data.images import check_images
from lnprobe.errors import InputError
from lnprobe.eval.bench import BENCHES, EvalItem
from lnprobe.eval.config import EvalConfig
from lnprobe.eval.generate import Prompt, generate
from lnprobe.eval.predictions import read_predictions
from lnprobe.io import write_json
from lnprobe.provenance import provenance


def trained_template(spec: str) -> str:
    """The chat template a checkpoint was trained with: from the lnprobe_config.json of its training run
    (the spec itself, or the run two levels above a checkpoint), else vicuna_v1."""
    path = Path(spec)
    for candidate in (path, path.parent.parent):
        config = candidate / "lnprobe_config.json"
        if config.is_file():
            try:
                record = json.loads(config.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            template = (
                record.get("config", {}).get("template")
                if record.get("config_type") == "TrainConfig"
                else None
            )
            if isinstance(template, str):
                return template
    return "vicuna_v1"


def prepare(cfg: EvalConfig) -> tuple[list[EvalItem], list[Prompt]]:
    """Items and prompts, with every image checked to exist (InputError counts the missing ones)."""
    bench = BENCHES.get(cfg.bench)
    data = Path(cfg.data)
    if not data.exists():
        raise InputError(f"{data}: no such file or folder (--data)")
    items = bench.read(data)[: cfg.limit]
    root = Path(cfg.images) if cfg.images else bench.images(data)
    missing = [it.image for it in items if it.image and not (root / it.image).is_file()]
    if missing:
        raise InputError(
            f"{root}: {len(missing)} of {len(items)} images missing (first: {missing[0]}); "
            "--images names the image folder"
        )
    template = cfg.prompt or bench.prompt
    if cfg.prompt is not None and "{question}" not in cfg.prompt and any(it.question for it in items):
        raise InputError("--prompt must contain {question} for this benchmark")
    prompts = []
    for it in items:
        text = template.replace("{question}", it.question)
        prompts.append(
            Prompt(f"<image>\n{text}" if it.image else text, root / it.image if it.image else None)
        )
    return items, prompts


def run_eval(cfg: EvalConfig) -> dict:
    from lnprobe.config import save_config
    from lnprobe.probes.inputs import load_multimodal

    bench = BENCHES.get(cfg.bench)
    output = cfg.output()
    output.check()
    items, prompts = prepare(cfg)
    if cfg.predictions is None:  # answers will be generated: every image must decode
        pairs = zip(items, prompts, strict=True)
        check_images(((p.image, f"item {it.id}") for it, p in pairs if p.image), cfg.progress)
    if cfg.predictions is not None:
        predictions = read_predictions(cfg.predictions, items, strict=cfg.limit is None)
    else:
        loaded = load_multimodal(cfg.ckpt, device=cfg.device, dtype=cfg.dtype, online=cfg.online)
        predictions = generate(
            loaded.model,
            loaded.processor,
            prompts,
            template=cfg.template or trained_template(cfg.ckpt),
            batch_size=cfg.batch_size,
            max_new_tokens=cfg.max_new_tokens or bench.max_new_tokens,
            progress=cfg.progress,
        )
    scored = bench.score(items, predictions)
    rows = [
        {"id": it.id, "image": it.image, "prompt": p.human, "reference": it.reference, "prediction": pred}
        | it.meta
        | extra
        for it, p, pred, extra in zip(items, prompts, predictions, scored["items"], strict=True)
    ]
    record = {
        "bench": bench.name,
        "ckpt": cfg.ckpt,
        "template": None if cfg.predictions else cfg.template or trained_template(cfg.ckpt),
        "predictions_from": cfg.predictions,
        "scores": scored["scores"],
        "items": rows,
        "config": asdict(cfg),
        "provenance": provenance(),
    }
    with output.build() as tmp:
        write_json(tmp / "results.json", record)
        for name, value in (bench.extra_files(items, predictions) if bench.extra_files else {}).items():
            write_json(tmp / name, value)
        save_config(cfg, tmp)
    return record
