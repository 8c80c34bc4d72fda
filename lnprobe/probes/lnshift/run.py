"""The lnshift probe's runner (`lnprobe lnshift CKPT --base BASE --data ... --out DIR`): how tuning moved
the norms, and whether the tuned norms bring image tokens closer to text tokens (definitions in
`lnprobe.probes.lnshift.stats`).

Two passes, one model in memory at a time: the tuned checkpoint (any `load()` spec: HF directory, lnprobe
delta, PEFT LN-tuning adapter), then the base. Each pass keeps its norm parameters (small) and streams the
input and output of every decoder norm over the same seeded inputs, split by modality (image-token vs
text-token positions; padding excluded). Massive-activation tokens (attention sinks, massive at any norm
site's input or output; `lnprobe.capture.sinks`) are left out of each model's statistics unless
`keep_sink_tokens`, and listed in `sink_tokens`. Architectures are compared on meta-device models first,
so a mismatched base fails before any weights load.
"""

from __future__ import annotations

import gc
from dataclasses import asdict, dataclass

import torch

from lnprobe.capture import Capture, SinkLog, select_sites
from lnprobe.data.llava import IMAGE, read_records
from lnprobe.errors import InputError
from lnprobe.io import write_csv, write_json
from lnprobe.probes.inputs import load_multimodal, probe_minibatches, saved_config, sink_rule
from lnprobe.probes.lnshift.config import LnShiftConfig
from lnprobe.probes.lnshift.stats import Moments, modality_gap, summarize_moments, weight_shift
from lnprobe.probes.registry import ProbeResult
from lnprobe.progress import tracked
from lnprobe.provenance import provenance

NORM_SITES = ["input_norm.*", "post_attention_norm.*", "final_norm.*"]


@dataclass
class LnShiftResult(ProbeResult):
    """OUT/lnshift.json. `weights[param]`: the weight shift of each norm tensor (tuned vs base);
    `activations[tuned|base][site][modality]`: moment summaries; `gaps[site]`: the image-vs-text gap, tuned
    and base; `summary`: the headline numbers; `no_norm_changed` flags identical norms; `sink_tokens`: the
    sink rule and the massive tokens found (`lnprobe.capture.SinkLog`)."""

    FILE = "lnshift.json"
    config: dict
    no_norm_changed: bool
    weights: dict[str, dict]
    activations: dict[str, dict]
    gaps: dict[str, dict]
    provenance: dict
    summary: dict
    sink_tokens: dict | None = None


def run_lnshift(cfg: LnShiftConfig) -> LnShiftResult:
    """Compute and write OUT/lnshift.json, the CSV tables and figures; return the record."""
    cfg.output().check()
    records = read_records(cfg.inputs.data)
    if cfg.modality_split and not any(r.image for r in records):
        raise InputError(
            f"{cfg.inputs.data}: no record has an image, so there are no image tokens to split by modality "
            "(--no-modality-split for statistics over all tokens)"
        )
    check_same_architecture(cfg.ckpt, cfg.base)
    log = SinkLog(sink_rule(cfg))
    tuned = _pass(cfg.ckpt, cfg, log, "tuned")
    base = _pass(cfg.base, cfg, log, "base")
    shifts = {name: weight_shift(w, base["norms"][name], cfg.top_k) for name, w in tuned["norms"].items()}
    record = {
        "config": saved_config(asdict(cfg)),
        "no_norm_changed": not any(s["changed"] for s in shifts.values()),
        "weights": shifts,
        "activations": {"tuned": tuned["stats"], "base": base["stats"]},
        "gaps": _gaps(tuned["stats"], base["stats"]) if cfg.modality_split else {},
        "provenance": provenance(seed=cfg.inputs.seed),
    }
    record["summary"] = _summary(record)
    record["sink_tokens"] = log.to_json()
    _write(cfg, record)
    return LnShiftResult.from_json(record)


def check_same_architecture(ckpt: str, base: str) -> None:
    """Parameter names and shapes of the two models (built on the meta device from their configs) must
    match; InputError names the first tensor that does not."""
    from lnprobe.models import build_from_config, resolve_config

    a = {n: tuple(p.shape) for n, p in build_from_config(resolve_config(ckpt)).named_parameters()}
    b = {n: tuple(p.shape) for n, p in build_from_config(resolve_config(base)).named_parameters()}
    for name, shape in a.items():
        if b.get(name) != shape:
            there = f"shape {b[name]}" if name in b else "missing"
            raise InputError(
                f"{base}: does not match {ckpt}: tensor {name} has shape {shape} in the checkpoint, "
                f"{there} in the base"
            )
    extra = next((n for n in b if n not in a), None)
    if extra:
        raise InputError(f"{base}: does not match {ckpt}: tensor {extra} is not in the checkpoint")


def _clean(name: str) -> str:
    """A parameter name without PEFT's wrappers, so tuned and base names line up."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def norm_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter owned directly by a norm module (LayerNorm / RMSNorm / ...), vision tower included."""
    from lnprobe.models.sites import is_norm

    out = {}
    for mod_name, module in model.named_modules():
        if is_norm(module):
            for p_name, p in module.named_parameters(recurse=False):
                out[_clean(f"{mod_name}.{p_name}")] = p.detach().float().cpu().clone()
    return out


def _pass(spec: str, cfg: LnShiftConfig, log: SinkLog | None = None, which: str = "tuned") -> dict:
    loaded = load_multimodal(spec, cfg.inputs.device)
    model = loaded.model
    norms = norm_parameters(model)
    tok = loaded.processor.tokenizer
    image_id = tok.convert_tokens_to_ids(IMAGE) if IMAGE in tok.get_vocab() else None
    sites = select_sites(loaded.sites, NORM_SITES)
    capture = Capture(model, sites, "all", image_id, sink_rule(cfg))
    batches, examples = probe_minibatches(cfg.inputs, loaded.processor)
    acc: dict[str, dict[str, Moments]] = {}
    items = tracked(batches, cfg.inputs.progress, f"norm activations of {spec}")
    for b, batch in enumerate(items):
        rows = capture.run(batch)
        if log is not None:
            log.add(capture.sinks, examples[b], which)
        kept = capture.selected  # the real tokens whose rows came out (massive ones left out)
        is_image = (batch["input_ids"] == image_id)[kept] if image_id is not None else None
        parts = {"image": is_image, "text": ~is_image} if cfg.modality_split else {"all": None}
        for site, r in rows.items():
            for modality, keep in parts.items():
                m = acc.setdefault(site, {}).setdefault(modality, Moments(r.shape[-1]))
                m.update(r if keep is None else r[keep])
    stats = {
        site: {mod: asdict(summarize_moments(m, cfg.outlier_factor)) for mod, m in by_mod.items() if m.n}
        for site, by_mod in acc.items()
    }
    del capture, model, loaded
    gc.collect()
    return {"norms": norms, "stats": stats}


def _gaps(tuned: dict, base: dict) -> dict:
    """Image-vs-text gap at each norm's input and output, for both models."""
    out = {}
    for which, stats in (("tuned", tuned), ("base", base)):
        for site, by_mod in stats.items():
            if "image" in by_mod and "text" in by_mod:
                out.setdefault(site, {})[which] = modality_gap(_ms(by_mod["image"]), _ms(by_mod["text"]))
    return out


def _ms(d: dict):
    from lnprobe.probes.lnshift.stats import MomentSummary

    return MomentSummary(**d)


def _summary(record: dict) -> dict:
    """Headline numbers: mean relative weight change of the decoder norms; mean gap at norm inputs and
    outputs for base and tuned, and how much each norm shrinks the gap (out / in)."""
    changed = [s["rel_l2"] for s in record["weights"].values() if s["changed"] and s["rel_l2"] is not None]
    n_changed = sum(s["changed"] for s in record["weights"].values())
    summary = {"norm_tensors": len(record["weights"]), "changed": n_changed}
    summary["mean_rel_l2_changed"] = sum(changed) / len(changed) if changed else 0.0
    for which in ("base", "tuned"):
        for port in ("in", "out"):
            vals = [
                g[which]
                for s, g in record["gaps"].items()
                if s.endswith("." + port) and g.get(which) is not None
            ]
            if vals:
                summary[f"gap_{which}_{port}"] = sum(vals) / len(vals)
    for which in ("base", "tuned"):
        if f"gap_{which}_in" in summary:
            summary[f"gap_ratio_{which}"] = summary[f"gap_{which}_out"] / summary[f"gap_{which}_in"]
    return summary


WEIGHT_COLUMNS = ("tensor", "numel", "changed", "rel_l2", "cosine", "ratio_min", "ratio_median", "ratio_max")
ACTIVATION_COLUMNS = (
    "model", "site", "modality", "tokens", "mean", "variance", "rms", "kurtosis", "outliers", "gap",
)  # fmt: skip


def _weight_rows(record: dict):
    for name, s in record["weights"].items():
        q = s["ratio_quantiles"]
        yield [name, s["numel"], s["changed"], s["rel_l2"], s["cosine"], q["min"], q["median"], q["max"]]


def _activation_rows(record: dict):
    for model, stats in record["activations"].items():
        for site, by_mod in stats.items():
            gap = record["gaps"].get(site, {}).get(model)
            for mod, s in by_mod.items():
                yield [model, site, mod, s["tokens"], s["mean"], s["variance"], s["rms"], s["kurtosis"],
                       len(s["outliers"]), gap]  # fmt: skip


def _write(cfg: LnShiftConfig, record: dict) -> None:
    from lnprobe.report.lines import lnshift_figures

    with cfg.output().build() as tmp:
        write_json(tmp / "lnshift.json", record)
        write_csv(tmp / "lnshift_weights.csv", WEIGHT_COLUMNS, _weight_rows(record))
        write_csv(tmp / "lnshift_activations.csv", ACTIVATION_COLUMNS, _activation_rows(record))
        lnshift_figures(record, tmp)
