"""`lnprobe similarity CKPT_A [CKPT_B]`: layer x layer representation similarity, with bootstrap intervals.

One checkpoint: every captured site against every other (the paper's cross-layer similarity, summarised by
the mean over off-diagonal pairs). Two checkpoints: every site of A against every site of B, plus the
per-site diagonal. Checkpoints run one after the other; pass A's per-batch rows go to safetensors shards on
disk, so memory stays flat and both models are never loaded together. Rows are the selected tokens of the
same inputs in both passes (at most `max_rows` per batch, the same random subset for every site and
checkpoint).

Metrics: `cka` (linear CKA, unbiased HSIC averaged over minibatches), `cka_biased` (with its random
baseline: Y rows permuted within each minibatch), `rbf_cka` (Gaussian kernels, median-heuristic bandwidth
per minibatch, unbiased HSIC), `cosine` (mean cosine of matched rows; equal widths).
Intervals: percentile bootstrap over minibatches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lnprobe.capture import Capture, select_sites, stream
from lnprobe.capture.tokens import MODES
from lnprobe.config import at_least, seed_field, validate
from lnprobe.data.llava import LlavaDataset, collate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.models import load
from lnprobe.probes.minibatch import MinibatchCKA, off_diagonal_mean
from lnprobe.provenance import provenance
from lnprobe.textio import parse_json, read_text

SIM_METRICS = ("cka", "cka_biased", "rbf_cka", "cosine")


@dataclass(frozen=True)
class SimilarityConfig:
    a: str
    data: str
    out: str
    b: str | None = None
    metrics: tuple[str, ...] = ("cka", "cosine")
    sites: tuple[str, ...] = ("layer.*",)
    tokens: str = "all"
    n: int = at_least(1, 64)  # examples
    batch_size: int = at_least(1, 8)
    max_rows: int = at_least(4, 512)  # rows per minibatch (a random subset when more tokens are selected)
    text_max_length: int = at_least(2, 128)  # tokens per text, for text models
    template: str = "vicuna_v1"
    image_folder: str | None = None
    seed: int = seed_field(0)
    device: str = "cpu"
    bootstrap: int = at_least(2, 200)
    save_activations: str | None = None  # write each checkpoint's captured rows here (a/ and b/ shards)
    progress: bool = True
    force: bool = False  # replace an earlier `lnprobe similarity` output at `out`
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)
        unknown = [m for m in self.metrics if m not in SIM_METRICS]
        if unknown:
            raise InputError(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(SIM_METRICS)})")
        if self.tokens not in MODES:
            raise InputError(f"unknown token selection {self.tokens!r} (known: {', '.join(MODES)})")

    def output(self) -> Output:
        return Output(
            Path(self.out), "similarity", self.force, (self.a, self.b, self.data, self.image_folder)
        )

    def activations_output(self) -> Output | None:
        if not self.save_activations:
            return None
        inputs = (self.a, self.b, self.data, self.image_folder, self.out)
        return Output(
            Path(self.save_activations),
            "similarity activations",
            self.force,
            inputs,
            flag="--save-activations",
        )


class _Pass:
    """One checkpoint's pass over the data: model, processor, selected sites, capture."""

    def __init__(self, spec: str, cfg: SimilarityConfig, loaded=None) -> None:
        self.loaded = loaded or load(spec, device=cfg.device)
        if self.loaded.processor is None:
            raise InputError(f"{spec}: has no processor files (needed to tokenise the data)")
        sites = self.loaded.sites
        self.sites = select_sites(sites, list(cfg.sites))
        tok = getattr(
            self.loaded.processor, "tokenizer", self.loaded.processor
        )  # a text model's is a tokenizer
        image_id = tok.convert_tokens_to_ids("<image>") if "<image>" in tok.get_vocab() else None
        self.capture = Capture(self.loaded.model.eval(), self.sites, cfg.tokens, image_id)


def _chunks(cfg: SimilarityConfig, count: int) -> list[list[int]]:
    """Seeded example order cut into minibatches (a trailing one too small for the estimator dropped)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(cfg.seed))[: cfg.n].tolist()
    chunks = [order[s : s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
    return chunks[:-1] if len(chunks) > 1 and len(chunks[-1]) < 4 else chunks


def _batches(cfg: SimilarityConfig, processor) -> list[dict]:
    """LLaVA data through a multi-modal processor, or plain text through a text model's tokenizer."""
    if not hasattr(processor, "image_processor"):
        texts = read_texts(cfg.data)
        return [
            dict(
                processor(
                    [texts[i] for i in c],
                    padding=True,
                    truncation=True,
                    max_length=cfg.text_max_length,
                    return_tensors="pt",
                )
            )
            for c in _chunks(cfg, len(texts))
        ]
    data = LlavaDataset(cfg.data, processor, cfg.template, image_folder=cfg.image_folder, decode_all=False)
    enc = data.encoder
    pad = processor.tokenizer.pad_token_id
    chunks = _chunks(cfg, len(data))
    data.check([i for c in chunks for i in c])  # only the images these examples use
    return [collate([data[i] for i in c], pad, enc.image_token_id, enc.n_image_tokens) for c in chunks]


def read_texts(path: str | Path) -> list[str]:
    """Texts for a text model: a JSONL of {"text": ...} lines, or the turns of LLaVA records."""
    path = Path(path)
    if path.suffix == ".jsonl":
        lines = read_text(path, "text data").splitlines()
        rows = [parse_json(line, f"{path}: line {i}") for i, line in enumerate(lines, 1) if line.strip()]
        if rows and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in rows):
            return [r["text"] for r in rows]
    from lnprobe.data.llava import IMAGE, read_records

    return [
        " ".join(part.replace(IMAGE, "").strip() for turn in r.turns for part in turn)
        for r in read_records(path)
    ]


def _subset(rows: dict[str, torch.Tensor], cap: int, seed: int) -> dict[str, torch.Tensor]:
    """The same random `cap` rows of every site (sites with other row counts, e.g. image-side, separately)."""
    out = {}
    for name, r in rows.items():
        if r.shape[0] > cap:
            idx = (
                torch.randperm(r.shape[0], generator=torch.Generator().manual_seed(seed))[:cap].sort().values
            )
            r = r[idx]
        out[name] = r
    return out


def _check_rows(rows: dict[str, torch.Tensor], metrics) -> None:
    small = {k: v.shape[0] for k, v in rows.items() if v.shape[0] < 4}
    if small and any(m.startswith("cka") for m in metrics):
        raise InputError(
            f"fewer than 4 rows in a minibatch at {', '.join(small)}; CKA needs more "
            "(larger --batch-size, or a token selection with more tokens)"
        )


def _cosine_matrix(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
    """Mean cosine of matched rows for every pair (i, j) with equal widths (NaN otherwise)."""
    out = torch.full((len(xs), len(ys)), float("nan"), dtype=torch.float64)
    nx = [torch.nn.functional.normalize(x.double(), dim=1, eps=1e-12) for x in xs]
    ny = [torch.nn.functional.normalize(y.double(), dim=1, eps=1e-12) for y in ys]
    for i, x in enumerate(nx):
        for j, y in enumerate(ny):
            if x.shape == y.shape:
                out[i, j] = (x * y).sum(1).mean()
    return out


class _Cosine:
    def __init__(self) -> None:
        self.terms: list[torch.Tensor] = []

    def update(self, xs, ys=None) -> None:
        self.terms.append(_cosine_matrix(xs, xs if ys is None else ys))

    def compute(self, which=None) -> torch.Tensor:
        idx = range(len(self.terms)) if which is None else which.tolist()
        return torch.stack([self.terms[i] for i in idx]).mean(0)

    def bootstrap(self, statistic, draws, level=0.95, seed=0):
        return MinibatchCKA.bootstrap(self, statistic, draws, level, seed)  # same resampling of minibatches


def _validate(cfg: SimilarityConfig) -> None:
    """Fail on bad input before any weights are loaded: site patterns (on meta-device models) and data."""
    from lnprobe.data.llava import read_records
    from lnprobe.models import build_from_config, resolve_config, resolve_sites

    text_model = False
    for spec in filter(None, (cfg.a, cfg.b)):
        sites = resolve_sites(build_from_config(resolve_config(spec)))
        select_sites(sites, list(cfg.sites))
        text_model = text_model or sites.vision_tower is None
    available = min(cfg.n, len(read_texts(cfg.data) if text_model else read_records(cfg.data)))
    if available < 4:
        raise InputError(f"{cfg.data}: {available} examples; the estimators need at least 4")
    if (
        cfg.tokens in ("mean", "last")
        and cfg.batch_size < 4
        and any(m.startswith("cka") for m in cfg.metrics)
    ):
        raise InputError(f"--tokens {cfg.tokens} gives one row per example: CKA needs --batch-size >= 4")


def run_similarity(cfg: SimilarityConfig) -> dict:
    """Compute, write OUT/similarity.{json,npz} + heatmap PNG/HTML atomically, and return the record."""
    output, acts = cfg.output(), cfg.activations_output()
    output.check()
    if acts:
        acts.check()
    _validate(cfg)
    with acts.build() if acts else contextlib.nullcontext(None) as act_tmp:
        work = dataclasses.replace(cfg, save_activations=str(act_tmp)) if act_tmp else cfg
        record, accs = _compute(work)
        record["config"] = _jsonable(asdict(cfg))
        _write(output, record, accs)
    return record


def _compute(cfg: SimilarityConfig) -> tuple[dict, dict]:
    accs = {m: _accumulator(m) for m in cfg.metrics}
    baseline = MinibatchCKA(debiased=False) if "cka_biased" in cfg.metrics else None
    shared = shared_base(cfg.a, cfg.b) if cfg.b else None
    swap = DeltaSwap(load(shared[0], device=cfg.device), shared[1], shared[2]) if shared else None
    first = _Pass(cfg.a, cfg, swap.use("a") if swap else None)
    batches = _batches(cfg, first.loaded.processor)
    names_a = [s.name for s in first.sites]
    if cfg.b is None:
        _single_pass(cfg, first, batches, accs, baseline)
        names_b = names_a
    else:
        with tempfile.TemporaryDirectory(prefix="lnprobe-sim-") as shards:
            _first_pass_to_disk(cfg, first, batches, Path(shards))
            if swap:  # same base: swap the delta's tensors in place and reuse the model and its capture
                swap.use("b")
                second = first
            else:
                del first
                gc.collect()
                second = _Pass(cfg.b, cfg)
            names_b = [s.name for s in second.sites]
            _second_pass(cfg, second, batches, Path(shards), names_a, accs, baseline)
    return _summarise(cfg, accs, baseline, names_a, names_b), accs


def _delta_side(spec: str) -> tuple[str, dict[str, torch.Tensor]] | None:
    """(resolved base directory, tensors to put in) for a base checkpoint or a non-LoRA delta of one."""
    from lnprobe.models.delta import read_delta, read_delta_tensors
    from lnprobe.models.load import base_of, check_base, checkpoint_kind, resolve_run

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


def _rows_of(cfg, p: _Pass, batches, label, which: str = "a"):
    save_to = Path(cfg.save_activations) / which if cfg.save_activations else None
    for b, rows in enumerate(stream(p.capture, batches, len(batches), label, cfg.progress, save_to)):
        rows = _subset(rows, cfg.max_rows, cfg.seed * 7919 + b)
        _check_rows(rows, cfg.metrics)
        yield b, rows


def _single_pass(cfg, p: _Pass, batches, accs, baseline) -> None:
    for b, rows in _rows_of(cfg, p, batches, f"capture {cfg.a}"):
        _update(accs, baseline, list(rows.values()), None, b, cfg.seed)


def _first_pass_to_disk(cfg, p: _Pass, batches, shards: Path) -> None:
    for b, rows in _rows_of(cfg, p, batches, f"capture {cfg.a}"):
        tensors = {f"rows.{k}": v.contiguous() for k, v in rows.items()}
        save_file(tensors, str(shards / f"batch-{b:05d}.safetensors"))


def _second_pass(cfg, p: _Pass, batches, shards: Path, names_a, accs, baseline) -> None:
    for b, rows in _rows_of(cfg, p, batches, f"capture {cfg.b}", "b"):
        saved = load_file(str(shards / f"batch-{b:05d}.safetensors"))
        xs = [saved[f"rows.{k}"] for k in names_a]
        ys = list(rows.values())
        if {x.shape[0] for x in xs} != {y.shape[0] for y in ys}:
            raise InputError(
                "the two checkpoints select different rows from the same inputs (different "
                "image-token counts?)"
            )
        _update(accs, baseline, xs, ys, b, cfg.seed)


def _accumulator(metric: str):
    if metric == "cosine":
        return _Cosine()
    if metric == "rbf_cka":
        return MinibatchCKA(debiased=True, kernel="rbf")
    return MinibatchCKA(debiased=metric == "cka")


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


def _summarise(cfg, accs, baseline, names_a, names_b) -> dict:
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
        summary[metric] = entry
    return {
        "config": _jsonable(asdict(cfg)),
        "sites_a": names_a,
        "sites_b": names_b,
        "rectangular": len(names_a) != len(names_b),
        "minibatches": len(next(iter(accs.values())).terms),
        "metrics": summary,
        "provenance": provenance(seed=cfg.seed),
    }


def _diag_mean(m: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(m).mean()


def _ci(acc, fn, cfg) -> tuple[float, float]:
    lo, hi = acc.bootstrap(lambda mat: fn(mat).reshape(()), draws=cfg.bootstrap, seed=cfg.seed)
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
