"""The similarity probe's runner (`lnprobe similarity CKPT_A [CKPT_B]`): layer x layer representation
similarity, with bootstrap intervals.

One checkpoint: every captured site against every other (the paper's cross-layer similarity, summarised by
the mean over off-diagonal pairs). Two checkpoints: every site of A against every site of B, plus the
per-site diagonal. Checkpoints run one after the other; pass A's per-batch rows go to safetensors shards on
disk, so memory stays flat and both models are never loaded together. Rows are the selected tokens of the
same inputs in both passes (at most `max_rows` per batch, the same random subset for every site and
checkpoint).

Massive-activation tokens (attention sinks, `lnprobe.capture.sinks`) are left out of every site's rows
unless `keep_sink_tokens`; the ones found are listed in `sink_tokens`. With two checkpoints a token either
one flags is left out of both (rows are matched by position: A's shards keep their positions and
massive-token mask, and B's pass leaves A's out too); pooled selections (`mean`, `last`) pool A over the
tokens A keeps and B over those both keep.

Metrics: `cka` (linear CKA, unbiased HSIC averaged over minibatches), `cka_biased` (with its random
baseline: Y rows permuted within each minibatch), `rbf_cka` (Gaussian kernels, median-heuristic bandwidth
per minibatch, unbiased HSIC), `cosine` (mean cosine of matched rows; equal widths).
Intervals: percentile bootstrap over minibatches. Inputs: `lnprobe.probes.inputs` (the seeded examples
every probe shares; a trailing minibatch under 4 examples joins the one before).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lnprobe.capture import Capture, SinkLog, select_sites, stream
from lnprobe.capture.tokens import POOLED
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.models import load
from lnprobe.probes.inputs import probe_minibatches, read_texts, saved_config, sink_rule
from lnprobe.probes.registry import ProbeResult
from lnprobe.probes.similarity.config import SimilarityConfig
from lnprobe.probes.similarity.metrics import METRICS
from lnprobe.probes.similarity.null import PermutationNull
from lnprobe.probes.similarity.stats import MinibatchCKA, MinibatchMean, off_diagonal_mean
from lnprobe.provenance import provenance

MIN_ROWS = 4  # the CKA estimators' fewest rows per minibatch


@dataclass
class SimilarityResult(ProbeResult):
    """OUT/similarity.json. `metrics[name]`: `matrix` (sites of A x sites of B), and with one checkpoint
    `cross_layer_mean`, with two (equal site counts) `diagonal` and `diagonal_mean`, each {value, ci95};
    `cka_biased` also `random_baseline`. `sink_tokens`: the sink rule and the massive tokens found
    (`lnprobe.capture.SinkLog`; absent from results written before it existed)."""

    FILE = "similarity.json"
    config: dict
    sites_a: list[str]
    sites_b: list[str]
    rectangular: bool
    minibatches: int
    examples: int
    metrics: dict[str, dict]
    provenance: dict
    sink_tokens: dict | None = None

    def summary(self, metric: str) -> dict | None:
        """{value, ci95} of the metric's cross-layer mean (one checkpoint) or diagonal mean (two)."""
        entry = self.metrics[metric]
        return entry.get("cross_layer_mean") or entry.get("diagonal_mean")


class _Pass:
    """One checkpoint's pass over the data: model, processor, selected sites, capture."""

    def __init__(self, spec: str, cfg: SimilarityConfig, loaded=None) -> None:
        self.loaded = loaded or load(spec, device=cfg.inputs.device)
        if self.loaded.processor is None:
            raise InputError(f"{spec}: has no processor files (needed to tokenise the data)")
        sites = self.loaded.sites
        self.sites = select_sites(sites, list(cfg.sites))
        tok = getattr(
            self.loaded.processor, "tokenizer", self.loaded.processor
        )  # a text model's is a tokenizer
        image_id = tok.convert_tokens_to_ids("<image>") if "<image>" in tok.get_vocab() else None
        self.capture = Capture(self.loaded.model.eval(), self.sites, cfg.tokens, image_id, sink_rule(cfg))
        self.sides = {s.name: s.side for s in self.sites}

    def positions(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per site, where each row came from: text-token rows by flat position in the minibatch (so two
        checkpoints' rows can be matched), other rows (pooled, image-side) by index."""
        text = self.capture.positions()
        return {
            name: text if text is not None and self.sides[name] == "text" else torch.arange(r.shape[0])
            for name, r in rows.items()
        }


def _subset(
    rows: dict[str, torch.Tensor], positions: dict[str, torch.Tensor], cap: int, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The same random `cap` rows of every site (sites with other row counts, e.g. image-side, separately),
    and their positions."""
    out, where = {}, {}
    for name, r in rows.items():
        p = positions[name]
        if r.shape[0] > cap:
            idx = (
                torch.randperm(r.shape[0], generator=torch.Generator().manual_seed(seed))[:cap].sort().values
            )
            r, p = r[idx], p[idx]
        out[name], where[name] = r, p
    return out, where


def _check_rows(rows: dict[str, torch.Tensor], metrics) -> None:
    small = {k: v.shape[0] for k, v in rows.items() if v.shape[0] < MIN_ROWS}
    if small and any(m.startswith("cka") for m in metrics):
        raise InputError(
            f"fewer than 4 rows in a minibatch at {', '.join(small)}; CKA needs more "
            "(larger --batch-size, or a token selection with more tokens)"
        )


def _validate(cfg: SimilarityConfig) -> None:
    """Fail on bad input before any weights are loaded: site patterns (on meta-device models) and data."""
    from lnprobe.data.llava import read_records
    from lnprobe.models import build_from_config, resolve_config, resolve_sites

    text_model = False
    for spec in filter(None, (cfg.a, cfg.b)):
        sites = resolve_sites(build_from_config(resolve_config(spec)))
        select_sites(sites, list(cfg.sites))
        text_model = text_model or sites.vision_tower is None
    available = min(
        cfg.inputs.n, len(read_texts(cfg.inputs.data) if text_model else read_records(cfg.inputs.data))
    )
    if available < MIN_ROWS:
        raise InputError(f"{cfg.inputs.data}: {available} examples; the estimators need at least 4")
    if (
        cfg.tokens in ("mean", "last")
        and cfg.inputs.batch_size < MIN_ROWS
        and any(m.startswith("cka") for m in cfg.metrics)
    ):
        raise InputError(f"--tokens {cfg.tokens} gives one row per example: CKA needs --batch-size >= 4")


def run_similarity(cfg: SimilarityConfig) -> SimilarityResult:
    """Compute, write OUT/similarity.{json,npz} + heatmap PNG/HTML atomically, and return the result."""
    output, acts = cfg.output(), cfg.activations_output()
    output.check()
    if acts:
        acts.check()
    _validate(cfg)
    with acts.build() if acts else contextlib.nullcontext(None) as act_tmp:
        work = dataclasses.replace(cfg, save_activations=str(act_tmp)) if act_tmp else cfg
        record, accs = _compute(work)
        record["config"] = saved_config(_jsonable(asdict(cfg)))
        _write(output, record, accs)
    return SimilarityResult.from_json(record)


def _compute(cfg: SimilarityConfig) -> tuple[dict, dict]:
    accs = {m: METRICS.get(m).accumulator() for m in cfg.metrics}
    if "cka" in accs and cfg.null_permutations:  # the permutation null, fed the same minibatches
        accs["cka"].null = PermutationNull(cfg.null_permutations, debiased=True, seed=cfg.inputs.seed)
    baseline = MinibatchCKA(debiased=False) if "cka_biased" in cfg.metrics else None
    shared = shared_base(cfg.a, cfg.b) if cfg.b else None
    swap = DeltaSwap(load(shared[0], device=cfg.inputs.device), shared[1], shared[2]) if shared else None
    first = _Pass(cfg.a, cfg, swap.use("a") if swap else None)
    batches, examples = probe_minibatches(cfg.inputs, first.loaded.processor, MIN_ROWS, cfg.text_max_length)
    names_a, sides_a = [s.name for s in first.sites], first.sides
    log = SinkLog(sink_rule(cfg))
    if cfg.b is None:
        _single_pass(cfg, first, batches, examples, log, accs, baseline)
        names_b = names_a
    else:
        with tempfile.TemporaryDirectory(prefix="lnprobe-sim-") as shards:
            _first_pass_to_disk(cfg, first, batches, examples, log, Path(shards))
            if swap:  # same base: swap the delta's tensors in place and reuse the model and its capture
                swap.use("b")
                second = first
            else:
                del first
                gc.collect()
                second = _Pass(cfg.b, cfg)
            names_b = [s.name for s in second.sites]
            a_side = (names_a, sides_a)
            _second_pass(cfg, second, batches, examples, log, Path(shards), a_side, accs, baseline)
    count = sum(len(b["input_ids"]) for b in batches)
    return _summarise(cfg, accs, baseline, names_a, names_b, count, log), accs


def _delta_side(spec: str) -> tuple[str, dict[str, torch.Tensor]] | None:
    """(resolved base directory, tensors to put in) for a base checkpoint or a non-LoRA delta of one."""
    from lnprobe.checkpoints.delta import read_delta, read_delta_tensors
    from lnprobe.checkpoints.load import check_base
    from lnprobe.models.load import base_of, checkpoint_kind, resolve_run

    spec = resolve_run(spec)
    kind = checkpoint_kind(spec)
    if kind == "hf":
        return str(Path(spec).resolve()), {}
    if kind != "delta":
        return None
    info = read_delta(spec)
    from lnprobe.regimes import resolve_regime

    if resolve_regime(info.regime).wraps:  # LoRA deltas change the module structure: load them separately
        return None
    base = base_of(spec)
    if checkpoint_kind(base) != "hf":
        return None
    check_base(spec, info, base)
    return str(Path(base).resolve()), read_delta_tensors(spec, info)


def shared_base(a: str, b: str) -> tuple[str, dict, dict] | None:
    """(base, tensors of A, tensors of B) when A and B are the same base or deltas of it, else None."""
    sa, sb = _delta_side(a), _delta_side(b)
    if sa is None or sb is None or sa[0] != sb[0]:
        return None
    return sa[0], sa[1], sb[1]


class DeltaSwap:
    """One loaded base; `use("a")` / `use("b")` puts that side's delta tensors in place (restoring the
    base values of every tensor either side touches), so two deltas of one base share one model."""

    def __init__(self, loaded, tensors_a: dict, tensors_b: dict) -> None:
        self.loaded, self.sides = loaded, {"a": tensors_a, "b": tensors_b}
        self.params = dict(loaded.model.named_parameters())
        touched = set(tensors_a) | set(tensors_b)
        unknown = sorted(touched - set(self.params))
        if unknown:
            raise InputError(f"delta tensors not in the base model: {unknown[:3]}")
        self.original = {n: self.params[n].detach().clone() for n in touched}

    @torch.no_grad()
    def use(self, side: str):
        for name, value in self.original.items():
            self.params[name].copy_(value)
        for name, value in self.sides[side].items():
            self.params[name].copy_(value)
        return self.loaded


def _rows_of(cfg, p: _Pass, batches, examples, log: SinkLog, which: str = "a", excludes=None):
    """(minibatch index, rows, positions) per minibatch, the massive tokens found logged as they come."""
    save_to = Path(cfg.save_activations) / which if cfg.save_activations else None
    label = f"capture {cfg.a if which == 'a' else cfg.b}"
    captured = stream(p.capture, batches, len(batches), label, cfg.inputs.progress, save_to, excludes)
    for b, rows in enumerate(captured):
        log.add(p.capture.sinks, examples[b], which)
        yield b, rows, p.positions(rows)


def _seed(cfg, b: int) -> int:
    return cfg.inputs.seed * 7919 + b


def _single_pass(cfg, p: _Pass, batches, examples, log, accs, baseline) -> None:
    for b, rows, positions in _rows_of(cfg, p, batches, examples, log):
        rows, _ = _subset(rows, positions, cfg.max_rows, _seed(cfg, b))
        _check_rows(rows, cfg.metrics)
        _update(accs, baseline, list(rows.values()), None, b, cfg.inputs.seed)


def _first_pass_to_disk(cfg, p: _Pass, batches, examples, log, shards: Path) -> None:
    for b, rows, positions in _rows_of(cfg, p, batches, examples, log):
        rows, positions = _subset(rows, positions, cfg.max_rows, _seed(cfg, b))
        _check_rows(rows, cfg.metrics)
        tensors = {f"rows.{k}": v.contiguous() for k, v in rows.items()}
        tensors |= {f"pos.{k}": v.clone() for k, v in positions.items()}  # (sites share one tensor)
        sinks = p.capture.sinks
        if sinks is not None and p.capture.rule.exclude:
            tensors["sinks"] = sinks.mask.to(torch.uint8).cpu().contiguous()
        save_file(tensors, str(shards / f"batch-{b:05d}.safetensors"))


def _saved_sinks(path: Path) -> torch.Tensor | None:
    """The first pass's massive-token mask of one minibatch (None when none was saved)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.get_tensor("sinks").bool() if "sinks" in fh.keys() else None  # noqa: SIM118


def _second_pass(cfg, p: _Pass, batches, examples, log, shards: Path, a_side, accs, baseline) -> None:
    names_a = a_side[0]
    files = [shards / f"batch-{b:05d}.safetensors" for b in range(len(batches))]
    excludes = [_saved_sinks(f) for f in files]  # A's massive tokens are left out of B's rows too
    for b, rows, positions in _rows_of(cfg, p, batches, examples, log, "b", excludes):
        saved = load_file(str(files[b]))
        xs, ys = _matched(cfg, p, saved, a_side, rows, positions, _seed(cfg, b))
        _check_rows(dict(zip(names_a, xs, strict=True)), cfg.metrics)
        if {x.shape[0] for x in xs} != {y.shape[0] for y in ys}:
            raise _different_rows()
        _update(accs, baseline, xs, ys, b, cfg.inputs.seed)


def _different_rows() -> InputError:
    return InputError(
        "the two checkpoints select different rows from the same inputs (different image-token counts?)"
    )


def _matched(cfg, p: _Pass, saved: dict, a_side, rows, positions, seed: int):
    """A's saved rows and B's rows of one minibatch, matched: text-token rows by position (the ones B
    leaves out as massive are dropped from A's too), the others as sampled (same seed, same rows)."""
    names_a, sides_a = a_side
    by_position = cfg.tokens not in POOLED
    text_a = [k for k in names_a if sides_a[k] == "text"] if by_position else []
    text_b = [k for k in rows if p.sides[k] == "text"] if by_position else []
    if not (text_a and text_b):  # nothing to match by position: sample both sides alike
        text_a, text_b = [], []
    others, _ = _subset(
        {k: v for k, v in rows.items() if k not in text_b},
        {k: v for k, v in positions.items() if k not in text_b},
        cfg.max_rows,
        seed,
    )
    keep_a = keep_b = None
    if text_a:
        pos_a, pos_b = saved[f"pos.{text_a[0]}"], positions[text_b[0]]
        keep_a, keep_b = torch.isin(pos_a, pos_b), torch.isin(pos_b, pos_a)
        sinks = p.capture.sinks
        dropped = pos_a[~keep_a]
        flagged = sinks.mask.flatten().nonzero().squeeze(1) if sinks is not None else dropped[:0]
        if not torch.isin(dropped, flagged.cpu()).all():  # a row A has that B neither has nor left out
            raise _different_rows()
    xs = [saved[f"rows.{k}"][keep_a] if k in text_a else saved[f"rows.{k}"] for k in names_a]
    ys = [rows[k][keep_b] if k in text_b else others[k] for k in rows]
    return xs, ys


def _update(accs, baseline, xs, ys, batch_index, seed) -> None:
    """Add one minibatch's rows (`ys=None`: the checkpoint against itself) to every accumulator; linear CKA
    picks Gram or feature space by cost (`lnprobe.probes.hsic`)."""
    for acc in accs.values():
        acc.update(xs, ys)
    if baseline is not None:  # unrelated rows: permute Y's rows within the minibatch
        perm = torch.randperm(
            xs[0].shape[0], generator=torch.Generator().manual_seed(seed + 104729 * batch_index)
        )
        baseline.update(xs, [y[perm] for y in (xs if ys is None else ys)])


def _summarise(cfg, accs, baseline, names_a, names_b, examples: int, log: SinkLog) -> dict:
    single = cfg.b is None
    summary = {}
    for metric, acc in accs.items():
        m = acc.compute()
        entry = {"matrix": m.tolist()}
        stats = {"cross_layer_mean": off_diagonal_mean} if single else {"diagonal_mean": _diag_mean}
        if not single and len(names_a) == len(names_b):
            entry["diagonal"] = torch.diagonal(m).tolist()
        for stat_name, fn in stats.items():
            if single or len(names_a) == len(names_b):
                value = float(fn(m))
                ci = _ci(acc, fn, cfg) if len(acc.terms) >= 2 else (None, None)
                entry[stat_name] = {"value": value, "ci95": list(ci)}
        if metric == "cka_biased" and baseline is not None:
            entry["random_baseline"] = float(baseline.compute().mean())
        chance = acc.random_baseline() if isinstance(acc, MinibatchMean) else None
        if chance is not None:  # mutual_knn's chance level k / (n - 1)
            entry["random_baseline"] = chance
        if getattr(acc, "null", None) is not None:
            entry["null"] = _null_entry(cfg, acc.null, m, entry, single)
        summary[metric] = entry
    return {
        "config": saved_config(_jsonable(asdict(cfg))),
        "sites_a": names_a,
        "sites_b": names_b,
        "rectangular": len(names_a) != len(names_b),
        "minibatches": len(next(iter(accs.values())).terms),
        "examples": examples,
        "metrics": summary,
        "provenance": provenance(seed=cfg.inputs.seed),
        "sink_tokens": log.to_json(),
    }


def _null_entry(cfg, null: PermutationNull, m: torch.Tensor, entry: dict, single: bool) -> dict:
    """The permutation null beside the statistic: per pair, and for its summary (off-diagonal mean with
    one checkpoint, diagonal mean with two of equal site counts, none for a rectangular matrix)."""
    name = "cross_layer_mean" if single else "diagonal_mean"
    square = m.shape[0] == m.shape[1]
    eye = torch.eye(*m.shape, dtype=torch.bool)
    pairs = ~eye if single else eye if square else None
    fn = off_diagonal_mean if single else _diag_mean if square else None
    interval = entry.get(name, {}).get("ci95", (None, None))
    return null.summary(m, fn, name, interval, pairs, draws=cfg.bootstrap, seed=cfg.inputs.seed)


def _diag_mean(m: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(m).mean()


def _ci(acc, fn, cfg) -> tuple[float, float]:
    lo, hi = acc.bootstrap(lambda mat: fn(mat).reshape(()), draws=cfg.bootstrap, seed=cfg.inputs.seed)
    return float(lo), float(hi)


def _jsonable(d: dict) -> dict:
    return {
        k: list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v for k, v in d.items()
    }


def _write(output: Output, record: dict, accs) -> None:
    from lnprobe.report.heatmaps import similarity_figures

    with output.build() as tmp:
        (tmp / "similarity.json").write_text(json.dumps(record, indent=2) + "\n")
        np.savez(tmp / "similarity.npz", **{m: acc.compute().numpy() for m, acc in accs.items()})
        similarity_figures(record, tmp)
