"""The linear-probe runner (`lnprobe linprobe --model base=B --model ln=L --data D --out DIR`).

Per model (one in memory at a time) and decoder layer l, activations are captured (nnsight, through
`lnprobe.capture`) at the input of layer l's input norm (`in`: the residual stream) and at its output
(`out`), over every real token of the seeded examples. Then, per model, site and layer:

    image_vs_text     is a token an image token (input_ids == the image token id) or text? A balanced
                      subsample (the same rows for every model), so chance is 0.5
    attribute:NAME    an attribute of the example's picture (shape, colour, place, count) from the mean of
                      its image-token states, one row per example; baseline: the majority class's share
    pca               2-D PCA of a seeded sample of image and text rows (views only, no statistic)

Probes are cross-validated logistic regressions with folds grouped by example (`fit.cross_validated`).
Massive-activation tokens (attention sinks, `lnprobe.capture.sinks`: massive at any of the captured
sites) are left out of a model's probe rows, PCA rows and image means unless `keep_sink_tokens`; each
model leaves out its own, so models whose sinks differ are probed on slightly different rows, and
`sink_tokens` lists them.
Attributes come from the records' `scene` field (the synthetic data writes it) or, for a one-shape
question, its `qtype`/`answer`; an attribute the data does not carry is skipped with a note.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lnprobe.capture.sinks import SinkLog
from lnprobe.data.llava import IMAGE, raw_records, read_records
from lnprobe.errors import InputError
from lnprobe.io import saved_path
from lnprobe.probes.inputs import example_chunks, load_multimodal, probe_minibatches, saved_config, sink_rule
from lnprobe.probes.linprobe.config import LinprobeConfig
from lnprobe.probes.linprobe.fit import balanced_rows, cross_validated, group_folds, pca2
from lnprobe.probes.registry import ProbeResult
from lnprobe.progress import tracked
from lnprobe.provenance import provenance

SITES = ("input_norm.*.in", "input_norm.*.out")
ATTRIBUTES = ("shape", "colour", "place", "count")
SINGLE_QTYPES = {"the-shape": "shape", "the-colour": "colour", "the-place": "place"}


@dataclass
class LinprobeResult(ProbeResult):
    """OUT/linprobe.json. `results`: one row per model, probe, site (`in`/`out` of the input norm) and
    layer: {model, probe, site, layer, accuracy, ci95, n, n_eff, correct, chance}; `attributes`: per
    attribute probed its class counts; `notes`: attributes skipped and why; `models`: {label: layers}."""

    FILE = "linprobe.json"
    config: dict
    examples: int
    models: dict
    attributes: dict
    notes: list
    results: list
    seconds: float
    provenance: dict
    summary: dict
    sink_tokens: dict | None = None


@dataclass(frozen=True)
class Rows:
    """Which captured rows enter the probes (fixed by the tokens, the same for every model).
    `is_image` / `example` `[tokens]`: per real token (example order, then position); `probe` and `pca`:
    indices into those tokens."""

    is_image: np.ndarray
    example: np.ndarray
    probe: np.ndarray
    pca: np.ndarray


def attribute_labels(path: str, indices: list[int]) -> dict[str, list[str | None]]:
    """{attribute: its value per example (None where unknown)} for the raw records at `indices`:
    shape / colour / place of a one-shape `scene` (or a one-shape question's `answer`), count of any."""
    raw = raw_records(path)
    out: dict[str, list[str | None]] = {a: [] for a in ATTRIBUTES}
    for i in indices:
        item = raw[i] if isinstance(raw[i], dict) else {}
        scene = item.get("scene") if isinstance(item.get("scene"), list) else None
        values: dict[str, str | None] = dict.fromkeys(ATTRIBUTES)
        if scene is not None:
            values["count"] = str(len(scene))
            if len(scene) == 1 and isinstance(scene[0], dict):
                values.update({a: scene[0].get(a) for a in ("shape", "colour", "place")})
        if item.get("qtype") in SINGLE_QTYPES and isinstance(item.get("answer"), str):
            values[SINGLE_QTYPES[item["qtype"]]] = item["answer"]
        for a in ATTRIBUTES:
            out[a].append(values[a] if isinstance(values[a], str) else None)
    return out


def _check(cfg: LinprobeConfig) -> tuple[list[int], list[bool]]:
    """The examples' record indices in the seeded order and whether each has an image; InputError for
    unusable input."""
    from lnprobe.models.load import checkpoint_kind

    for label, spec in cfg.specs.items():
        kind = checkpoint_kind(spec)
        if kind in ("preset", "json"):
            raise InputError(f"--model {label}={spec}: a {kind} has no weights; give a checkpoint directory")
    records = read_records(cfg.inputs.data)
    order = [i for chunk in example_chunks(len(records), cfg.inputs) for i in chunk]
    if cfg.folds > len(order):
        raise InputError(f"--folds {cfg.folds}: more folds than examples ({len(order)} in {cfg.inputs.data})")
    if not any(records[i].image for i in order):
        raise InputError(f"{cfg.inputs.data}: no example has an image (linprobe probes image tokens)")
    return [records[i].index for i in order], [bool(records[i].image) for i in order]


def token_rows(batches: list[dict], image_id: int, cfg: LinprobeConfig) -> Rows:
    """Image/text label and example of every real token, the balanced probe rows and the PCA rows."""
    is_image, example, start = [], [], 0
    for batch in batches:
        real = batch["attention_mask"].bool()
        is_image.append((batch["input_ids"] == image_id)[real].numpy())
        ids = torch.arange(start, start + real.shape[0]).unsqueeze(1).expand_as(real)
        example.append(ids[real].numpy())
        start += real.shape[0]
    img, ex = np.concatenate(is_image), np.concatenate(example)
    if img.all() or not img.any():
        raise InputError(f"{cfg.inputs.data}: the examples need both image and text tokens")
    probe = balanced_rows(img, cfg.tokens_per_class, cfg.probe_seed)
    if np.unique(ex[probe]).size < cfg.folds:
        raise InputError(f"--folds {cfg.folds}: the image-vs-text rows come from fewer examples")
    return Rows(img, ex, probe, balanced_rows(img, cfg.pca_points, cfg.probe_seed))


def capture_model(label: str, spec: str, cfg: LinprobeConfig, rows: Rows | None, log=None):
    """(rows, {site name: (probe rows `[p, d]`, PCA rows `[q, d]`, per-example image means `[n, d]`)},
    layers, kept) of one model, freed afterwards; `kept` `[tokens]`: the real tokens it did not leave out
    as massive (the probe and PCA rows are those of `rows.probe` / `rows.pca` that it kept)."""
    from lnprobe.capture import Capture, select_sites

    loaded = load_multimodal(spec, cfg.inputs.device)
    tok = loaded.processor.tokenizer
    if IMAGE not in tok.get_vocab():
        raise InputError(f"--model {label}={spec}: its tokenizer has no {IMAGE} token")
    image_id = tok.convert_tokens_to_ids(IMAGE)
    batches, examples = probe_minibatches(cfg.inputs, loaded.processor)
    mine = token_rows(batches, image_id, cfg)
    if rows is not None and not (np.array_equal(rows.is_image, mine.is_image)):
        raise InputError(f"--model {label}={spec}: tokenises the data differently from the first model")
    rows = rows or mine
    sites = select_sites(loaded.sites, list(SITES))
    capture = Capture(loaded.model, sites, "all", image_id, sink_rule(cfg))
    parts: dict[str, list[list[torch.Tensor]]] = {s.name: [[], [], []] for s in sites}
    items = tracked(batches, cfg.inputs.progress, f"activations of {label}")
    start, kept = 0, []
    for b, batch in enumerate(items):
        captured = capture.run({k: v.to(cfg.inputs.device) for k, v in batch.items()})
        if log is not None:
            log.add(capture.sinks, examples[b], label)
        real = batch["attention_mask"].bool()
        count = int(real.sum())
        span = slice(start, start + count)
        keep = capture.selected.cpu()[real]  # [count]: the real tokens whose rows came out
        row_of = torch.cumsum(keep, 0) - 1  # a kept token's row in the captured `h`
        keep_p, keep_q = (_local(i, span, keep, row_of) for i in (rows.probe, rows.pca))
        img = torch.from_numpy(rows.is_image[span])[keep]
        ex = torch.from_numpy(rows.example[span])[keep]
        size, first = int(batch["input_ids"].shape[0]), int(rows.example[span][0])
        for name, h in captured.items():  # h: [kept tokens, d]
            parts[name][0].append(h[keep_p])
            parts[name][1].append(h[keep_q])
            parts[name][2].append(_image_means(h[img], ex[img], size, first))
        kept.append(keep.numpy())
        start += count
    layers = loaded.sites.num_layers
    del capture, loaded, batches
    gc.collect()
    data = {k: tuple(torch.cat(v).double().numpy() for v in p) for k, p in parts.items()}
    return rows, data, layers, np.concatenate(kept)


def _local(indices: np.ndarray, span: slice, keep: torch.Tensor, row_of: torch.Tensor) -> torch.Tensor:
    """The captured rows of the token `indices` falling in `span` that were kept (`keep`, per token of
    the span; `row_of`: each kept token's row)."""
    inside = torch.from_numpy(indices[(indices >= span.start) & (indices < span.stop)] - span.start)
    return row_of[inside[keep[inside]]]


def _image_means(h: torch.Tensor, ex: torch.Tensor, size: int, first: int) -> torch.Tensor:
    """`[size, d]`: per example of the batch the mean of its image-token rows `h` (NaN without any)."""
    sums = torch.zeros(size, h.shape[1], dtype=torch.float64).index_add_(0, ex - first, h.double())
    counts = torch.bincount(ex - first, minlength=size).double().unsqueeze(1)
    return sums / counts


def probe_model(
    label: str, data: dict, rows: Rows, labels: dict, cfg: LinprobeConfig, kept: np.ndarray | None = None
) -> tuple[list, dict]:
    """(result rows, PCA views {site: {layer: {image, text, explained}}}) of one model's captures; `kept`
    `[tokens]`: the tokens the model did not leave out (default: all)."""
    if kept is not None:  # the probe and PCA rows this model kept, in the order they were captured
        rows = dataclasses.replace(rows, probe=rows.probe[kept[rows.probe]], pca=rows.pca[kept[rows.pca]])
    y_i, g_i = rows.is_image[rows.probe].astype(int), rows.example[rows.probe]
    splits = {"": group_folds(y_i, g_i, cfg.folds, cfg.probe_seed)}  # the same folds at every site
    splits |= {a: group_folds(y, keep, cfg.folds, cfg.probe_seed) for a, (keep, y) in labels.items()}
    kinds = rows.is_image[rows.pca]
    out, views = [], {}
    items = tracked(list(data.items()), cfg.inputs.progress, f"probes of {label}")
    for name, (probe_x, pca_x, means) in items:
        _, layer, site = name.split(".")
        where = {"model": label, "site": site, "layer": int(layer)}
        r = cross_validated(probe_x, y_i, g_i, cfg.folds, cfg.probe_seed, cfg.c, splits[""])
        out.append({**where, "probe": "image_vs_text", **r, "chance": 0.5})
        for attr, (keep, y) in labels.items():
            r = cross_validated(means[keep], y, keep, cfg.folds, cfg.probe_seed, cfg.c, splits[attr])
            out.append({**where, "probe": f"attribute:{attr}", **r, "chance": r["majority"]})
        coords, explained = pca2(pca_x)
        views.setdefault(site, {})[layer] = {
            "image": np.round(coords[kinds], 5).tolist(),
            "text": np.round(coords[~kinds], 5).tolist(),
            "explained": explained,
        }
    return out, views


def usable_attributes(values: dict[str, list], folds: int) -> tuple[dict, dict, list[str]]:
    """({attribute: (example indices, labels)}, {attribute: class counts}, notes) for the attributes
    known for at least `folds` examples in at least 2 classes, one of them with at least `folds` examples
    (stratified folds need it); the others get a note."""
    labels, counts, notes = {}, {}, []
    for attr, vals in values.items():
        keep = np.array([i for i, v in enumerate(vals) if v is not None], dtype=int)
        y = np.array([vals[i] for i in keep], dtype=object).astype(str)
        classes, n = np.unique(y, return_counts=True)
        if keep.size < folds or classes.size < 2 or n.max() < folds:
            why = (
                "absent from the data"
                if keep.size == 0
                else f"{keep.size} examples, {classes.size} class(es), the largest of {n.max()}"
            )
            notes.append(
                f"attribute {attr} skipped: {why} (needs >= {folds} examples in >= 2 classes, one class "
                f"with >= {folds})"
            )
            continue
        labels[attr] = (keep, y)
        counts[attr] = {str(c): int(k) for c, k in zip(classes, n, strict=True)}
    return labels, counts, notes


def run_linprobe(cfg: LinprobeConfig) -> LinprobeResult:
    """Compute and write OUT/linprobe.json, linprobe.csv, linprobe_pca.json and the figures."""
    cfg.output().check()
    indices, has_image = _check(cfg)
    values = attribute_labels(cfg.inputs.data, indices)
    values = {
        a: [v if seen else None for v, seen in zip(vals, has_image, strict=True)]
        for a, vals in values.items()
    }
    labels, counts, notes = usable_attributes(values, cfg.folds)
    start = time.perf_counter()
    rows, results, views, layers = None, [], {}, {}
    log = SinkLog(sink_rule(cfg))
    for label, spec in cfg.specs.items():
        rows, data, layers[label], kept = capture_model(label, spec, cfg, rows, log)
        part, views[label] = probe_model(label, data, rows, labels, cfg, kept)
        results += part
        del data
    record = _record(cfg, len(indices), layers, counts, notes, results, time.perf_counter() - start)
    record["sink_tokens"] = log.to_json()
    _write(cfg, record, views)
    return LinprobeResult.from_json(record)


def _record(cfg, examples, layers, counts, notes, results, seconds) -> dict:
    config = saved_config(asdict(cfg))
    config["models"] = [f"{k}={saved_path(v, cfg.out)}" for k, v in cfg.specs.items()]
    record = {
        "config": config,
        "examples": examples,
        "models": layers,
        "attributes": counts,
        "notes": notes,
        "results": results,
        "seconds": seconds,
        "provenance": provenance(seed=cfg.inputs.seed, probe_seed=cfg.probe_seed),
    }
    record["summary"] = summary(results)
    return record


def summary(results: list[dict]) -> dict:
    """Per model and probe: the best layer and site, its accuracy and interval, and the chance level."""
    best: dict[str, dict] = {}
    for r in results:
        key = f"{r['model']} {r['probe']}"
        if key not in best or r["accuracy"] > best[key]["accuracy"]:
            best[key] = {k: r[k] for k in ("model", "probe", "site", "layer", "accuracy", "ci95", "chance")}
    return best


CSV_COLUMNS = ("model", "probe", "site", "layer", "accuracy", "ci95_low", "ci95_high", "chance", "n", "n_eff")


def _write(cfg: LinprobeConfig, record: dict, views: dict) -> None:
    from lnprobe.io import write_csv, write_json
    from lnprobe.report.linprobe import linprobe_figures

    rows = ({**r, "ci95_low": r["ci95"][0], "ci95_high": r["ci95"][1]} for r in record["results"])
    with cfg.output().build() as tmp:
        write_json(tmp / "linprobe.json", record)
        write_json(tmp / "linprobe_pca.json", views)
        write_csv(tmp / "linprobe.csv", CSV_COLUMNS, ([row[c] for c in CSV_COLUMNS] for row in rows))
        linprobe_figures(record, views, tmp)
