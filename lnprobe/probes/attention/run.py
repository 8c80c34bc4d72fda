"""The attention-to-image probe's runner (`lnprobe attention --model base=B --model ln=T --data D --out DIR`):
per decoder layer and head, the share of text tokens' attention on image tokens (statistics in
`lnprobe.probes.attention.stats`), for each model and against the first.

The models are loaded one after the other (one in memory), each switched to eager attention (the fused
kernels return no weights). A forward hook on each decoder layer's attention module reduces that layer's
weights `[batch, heads, q, k]` to the per-example shares `[batch, heads]` as the pass runs, so no more
than one layer's weights are alive at once (what `output_attentions=True` would return, minus keeping
them all). Every model sees the same seeded examples (`ProbeInputs`) through its own processor.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass

import torch

from lnprobe.data.llava import IMAGE, read_records
from lnprobe.errors import InputError
from lnprobe.io import saved_path, write_csv, write_json
from lnprobe.probes.attention.config import AttentionConfig
from lnprobe.probes.attention.stats import image_share, query_mask, resample_counts, summarise
from lnprobe.probes.inputs import ProbeInputs, load_multimodal, probe_batches, saved_config
from lnprobe.probes.registry import ProbeResult
from lnprobe.progress import tracked
from lnprobe.provenance import provenance


@dataclass
class AttentionResult(ProbeResult):
    """OUT/attention.json. `models[label]`: {path, share: {value, ci95_low, ci95_high} as [layers][heads],
    layer_mean: {value [layers], ci95 [layers][2]}, mean: {value, ci95}}; `differences["ln - base"]`: the
    same for the per-example differences, with `minuend` / `subtrahend` labels; `examples` used (with image
    tokens) and `without_image` left out; `seconds` per model."""

    FILE = "attention.json"
    config: dict
    labels: list
    examples: int
    without_image: int
    layers: int
    heads: int
    models: dict
    differences: dict
    seconds: dict
    provenance: dict
    summary: dict


def attention_shape(spec: str) -> tuple[int, int]:
    """(decoder layers, attention heads) of a checkpoint, from its config (no weights loaded)."""
    from lnprobe.models import resolve_config

    config = resolve_config(spec)
    text = getattr(config, "text_config", None) or config
    return int(text.num_hidden_layers), int(text.num_attention_heads)


def check_inputs(cfg: AttentionConfig) -> tuple[int, int]:
    """Every model's (layers, heads) equal and the data with images, before any weights load; returns the
    shape."""
    shapes = {label: attention_shape(spec) for label, spec in cfg.labelled().items()}
    first, shape = next(iter(shapes.items()))
    for label, other in shapes.items():
        if other != shape:
            raise InputError(
                f"--model {label}={cfg.labelled()[label]}: {other[0]} decoder layers x {other[1]} heads, "
                f"but {first} has {shape[0]} x {shape[1]} (the models must share an architecture)"
            )
    records = read_records(cfg.inputs.data)
    if not any(r.image for r in records):
        raise InputError(f"{cfg.inputs.data}: no record has an image (attention to image tokens needs them)")
    return shape


class ShareHooks:
    """Forward hooks on each decoder layer's attention module: `shares[i]` gets layer i's `[batch, heads]`
    per-example shares of the current batch (set `image` / `query` masks first)."""

    def __init__(self, model: torch.nn.Module, modules: tuple[str, ...]) -> None:
        self.image = self.query = None
        self.shares: list[torch.Tensor | None] = [None] * len(modules)
        self.handles = [
            model.get_submodule(name).register_forward_hook(self._hook(i)) for i, name in enumerate(modules)
        ]

    def _hook(self, i: int):
        def hook(module, args, output) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError(f"{type(module).__name__} returned no attention weights (not eager?)")
            self.shares[i] = image_share(weights, self.image, self.query).cpu()

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def model_shares(spec: str, inputs: ProbeInputs, label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example shares `[n, layers, heads]` float64, NaN rows for examples without image tokens;
    whether each example has image tokens `[n]`) of one model, loaded and freed here."""
    loaded = load_multimodal(spec, inputs.device)
    model = loaded.model
    model.set_attn_implementation("eager")
    image_id = loaded.processor.tokenizer.convert_tokens_to_ids(IMAGE)
    batches = probe_batches(inputs, loaded.processor)
    items = tracked(batches, inputs.progress, f"attention: {label}")
    hooks = ShareHooks(model, loaded.sites.attn)
    rows, valid = [], []
    try:
        with torch.inference_mode():
            for batch in items:
                batch = {k: v.to(inputs.device) for k, v in batch.items() if k != "labels"}
                hooks.image = batch["input_ids"] == image_id  # [batch, tokens]
                hooks.query = query_mask(batch["input_ids"], batch["attention_mask"], image_id)
                model(**batch, use_cache=False)
                rows.append(torch.stack(hooks.shares, 1))  # [batch, layers, heads]
                valid.append(hooks.query.any(1).cpu())
    finally:
        hooks.remove()
        del model, loaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return torch.cat(rows), torch.cat(valid)


def run_attention(cfg: AttentionConfig) -> AttentionResult:
    """Compute and write OUT/attention.json, attention.csv and the heatmaps; return the record."""
    cfg.output().check()
    check_inputs(cfg)
    shares, valid, seconds = {}, None, {}
    for label, spec in cfg.labelled().items():
        start = time.perf_counter()
        values, has_image = model_shares(spec, cfg.inputs, label)
        seconds[label] = time.perf_counter() - start
        if valid is not None and not torch.equal(valid, has_image):
            raise InputError(f"--model {label}={spec}: its processor puts image tokens in other examples")
        valid, shares[label] = has_image, values
    if valid is None or int(valid.sum()) < 2:
        raise InputError(f"{cfg.inputs.data}: fewer than 2 of the examples have image tokens")
    record = _record(cfg, {k: v[valid] for k, v in shares.items()}, int((~valid).sum()), seconds)
    _write(cfg, record)
    return AttentionResult.from_json(record)


def _record(cfg: AttentionConfig, shares: dict[str, torch.Tensor], left_out: int, seconds: dict) -> dict:
    """`shares[label]`: `[n, layers, heads]` per-example shares of the examples with image tokens."""
    labels = list(shares)
    first = shares[labels[0]]
    counts = resample_counts(first.shape[0], cfg.bootstrap, cfg.bootstrap_seed)
    paths = cfg.labelled()
    models = {k: {"path": saved_path(paths[k], cfg.out), **summarise(v, counts)} for k, v in shares.items()}
    differences = {
        f"{k} - {labels[0]}": {"minuend": k, "subtrahend": labels[0], **summarise(v - first, counts)}
        for k, v in list(shares.items())[1:]
    }
    config = saved_config(asdict(cfg))
    config["models"] = [f"{k}={saved_path(p, cfg.out)}" for k, p in paths.items()]
    return {
        "config": config,
        "labels": labels,
        "examples": int(first.shape[0]),
        "without_image": left_out,
        "layers": int(first.shape[1]),
        "heads": int(first.shape[2]),
        "models": models,
        "differences": differences,
        "seconds": seconds,
        "provenance": provenance(seed=cfg.inputs.seed),
        "summary": {
            "mean": {k: m["mean"]["value"] for k, m in models.items()},
            "difference": {k: d["mean"]["value"] for k, d in differences.items()},
        },
    }


CSV_HEADER = ["model", "kind", "layer", "head", "value", "ci95_low", "ci95_high"]


def csv_rows(record: dict) -> list[list]:
    """attention.csv: per model (kind share) and difference (kind difference) every (layer, head) cell,
    then each layer's mean over heads (head `mean`) and the overall mean (layer and head `mean`)."""
    rows = []
    entries = [(k, "share", v) for k, v in record["models"].items()]
    entries += [(k, "difference", v) for k, v in record["differences"].items()]
    for name, kind, entry in entries:
        s = entry["share"]
        for layer, values in enumerate(s["value"]):
            for head, value in enumerate(values):
                rows.append(
                    [name, kind, layer, head, value, s["ci95_low"][layer][head], s["ci95_high"][layer][head]]
                )
        for layer, (value, ci) in enumerate(
            zip(entry["layer_mean"]["value"], entry["layer_mean"]["ci95"], strict=True)
        ):
            rows.append([name, kind, layer, "mean", value, *ci])
        rows.append([name, kind, "mean", "mean", entry["mean"]["value"], *entry["mean"]["ci95"]])
    return rows


def _write(cfg: AttentionConfig, record: dict) -> None:
    from lnprobe.report.attention import attention_figures

    with cfg.output().build() as tmp:
        write_json(tmp / "attention.json", record)
        write_csv(tmp / "attention.csv", CSV_HEADER, csv_rows(record))
        attention_figures(record, tmp)
