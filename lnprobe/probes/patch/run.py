"""The norm-patching probe's runner (`lnprobe patch --base B --tuned T --data D --out DIR`): which norms
carry the adaptation (statistics in `lnprobe.probes.patch.stats`).

One model in memory: the tuned checkpoint. The base is loaded once, compared tensor by tensor, and only the
parameters that differ are kept (for an LN-tuned checkpoint: its norms, plus the connector or vision norms
if its regime trained them), then freed. Every condition is a choice, per differing parameter, of its tuned
or base value, copied into the model IN PLACE (`NormSwap`); nothing is reloaded.

Units: each decoder layer's input norm (`input.i`) and post-attention norm (`post_attention.i`), and the
final norm (`final`). Conditions, each one pass over the seeded eval set:
    base, tuned                      every differing parameter at its base / tuned value
    into_base[u]                     base, with unit u's norms from the tuned model
    out_of_tuned[u]                  tuned, with unit u's norms from the base
    bottom[k], top[k] (--cumulative) base, with the norms of layers 0..k / k..L-1 from the tuned model
Two conditions with the same weights share one pass (a unit whose norms did not change costs nothing), so
the passes run are at most 2 + 2 (2L + 1) + 2L; `forward_passes` in patch.json counts them.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass

import torch

from lnprobe.data.llava import IMAGE, read_records
from lnprobe.errors import InputError
from lnprobe.io import saved_path, write_csv, write_json
from lnprobe.models.sites import ModelSites
from lnprobe.probes.inputs import load_multimodal, probe_batches, saved_config
from lnprobe.probes.lnshift.run import check_same_architecture
from lnprobe.probes.patch.activations import TOKEN_KINDS, activation_patching
from lnprobe.probes.patch.config import PatchConfig
from lnprobe.probes.patch.stats import fraction, gap, resample_indices
from lnprobe.probes.registry import ProbeResult
from lnprobe.progress import tracked
from lnprobe.provenance import provenance
from lnprobe.train.loss import answer_scores


@dataclass
class PatchResult(ProbeResult):
    """OUT/patch.json. `losses` / `accuracy`: mean answer-token loss / first-answer accuracy (greedy,
    teacher-forced) of base and tuned; `gap`: L_base - L_tuned with its interval; `units[i]`: {unit, kind,
    layer, params, changed, into_base: {loss, accuracy, recovered}, out_of_tuned: {loss, accuracy, lost}}
    (fractions as {value, ci95}, value None when L_base == L_tuned); `cumulative`: {bottom, top}: per k the
    layers patched into the base, loss, accuracy and recovered fraction; `other_changed`: differing
    parameters outside the decoder norms (base or tuned with the rest); `forward_passes` over `examples`;
    `activations[i]`: {unit, kind, layer, tokens (image / text / both), loss, accuracy, recovered}: the base
    with that norm's output replaced by the tuned one's at those tokens (`activation_passes` passes)."""

    FILE = "patch.json"
    config: dict
    examples: int
    losses: dict
    gap: dict
    units: list
    cumulative: dict
    other_changed: list
    forward_passes: int
    seconds: float
    provenance: dict
    summary: dict
    accuracy: dict | None = None  # absent from records written before lnprobe scored answers here
    activations: list | None = None  # norm-output patching by token kind (`activations.py`)
    activation_passes: int = 0


def norm_units(model: torch.nn.Module, sites: ModelSites) -> dict[str, tuple[str, ...]]:
    """{unit: parameter names}: `input.i`, `post_attention.i` per decoder layer, then `final`."""

    def params(module_name: str) -> tuple[str, ...]:
        module = model.get_submodule(module_name)
        return tuple(f"{module_name}.{p}" for p, _ in module.named_parameters(recurse=False))

    units = {}
    for i, (a, b) in enumerate(zip(sites.input_norms, sites.post_attention_norms, strict=True)):
        units[f"input.{i}"] = params(a)
        units[f"post_attention.{i}"] = params(b)
    if sites.final_norm:
        units["final"] = params(sites.final_norm)
    return units


class NormSwap:
    """Parameters of one model set in place to their tuned or base values.

    `base[name]`, `tuned[name]`: copies (the model's dtype and device) of every parameter that differs
    between the two checkpoints; `set(names)` gives the parameters in `names` their tuned value and every
    other differing parameter its base value; `restore()` puts the tuned model back exactly."""

    def __init__(self, model: torch.nn.Module, base: dict[str, torch.Tensor]) -> None:
        self.model = model
        params = dict(model.named_parameters())
        self.params = {name: params[name] for name in base}
        self.tuned = {name: p.detach().clone() for name, p in self.params.items()}
        self.base = {name: base[name].to(p.dtype).to(p.device) for name, p in self.params.items()}

    @property
    def changed(self) -> frozenset[str]:
        return frozenset(self.params)

    @torch.no_grad()
    def set(self, tuned_names) -> None:
        for name, p in self.params.items():
            p.copy_(self.tuned[name] if name in tuned_names else self.base[name])

    def restore(self) -> None:
        self.set(self.changed)


def differing_parameters(model: torch.nn.Module, base_spec: str) -> dict[str, torch.Tensor]:
    """The base checkpoint's parameters that differ from `model`'s (CPU copies), the base loaded once on the
    CPU (so an accelerator holds one model) and freed."""
    base = load_multimodal(base_spec, "cpu").model
    mine = dict(model.named_parameters())
    out = {}
    for name, p in base.named_parameters():
        t = mine.get(name)
        if t is None or t.shape != p.shape:
            raise InputError(f"{base_spec}: tensor {name} does not match the tuned checkpoint")
        if not torch.equal(p.detach().to(t.dtype), t.detach().cpu()):
            out[name] = p.detach().cpu().clone()
    del base
    gc.collect()
    return out


def conditions(units: dict[str, tuple[str, ...]], layers: int, cumulative: bool) -> list[tuple]:
    """[(group, key, tuned parameter names)] in the order they run."""
    out: list[tuple] = [("base", None, frozenset()), ("tuned", None, None)]
    out += [("into_base", u, frozenset(names)) for u, names in units.items()]
    out += [("out_of_tuned", u, ("all-but", frozenset(names))) for u, names in units.items()]
    if cumulative:

        def layer_names(ks) -> frozenset[str]:
            kinds = ("input", "post_attention")
            return frozenset(n for k in ks for kind in kinds for n in units.get(f"{kind}.{k}", ()))

        out += [("bottom", k, layer_names(range(k + 1))) for k in range(layers)]
        out += [("top", k, layer_names(range(k, layers))) for k in range(layers)]
    return out


def _effective(spec, changed: frozenset[str]) -> frozenset[str]:
    """The differing parameters that take their tuned value under a condition's spec."""
    if spec is None:
        return changed
    if isinstance(spec, tuple):  # ("all-but", names): everything tuned except these
        return changed - spec[1]
    return changed & spec


def eval_losses(
    model, sites: ModelSites, batches: list[dict], device: str, stop: set[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-example mean answer-token loss `[n]` float64, its target-token counts `[n]`, whether greedy
    decoding gives its first answer `[n]`)."""
    losses, counts, hits = [], [], []
    with torch.inference_mode():
        for batch in batches:
            sums, count, hit = answer_scores(model, sites, {k: v.to(device) for k, v in batch.items()}, stop)
            losses.append((sums.double() / count.clamp_min(1)).cpu())
            counts.append(count.cpu())
            hits.append(hit)
    return torch.cat(losses), torch.cat(counts), torch.cat(hits)


def run_patch(cfg: PatchConfig) -> PatchResult:
    """Compute and write OUT/patch.json, patch.csv and the figures; return the record."""
    cfg.output().check()
    records = read_records(cfg.inputs.data)
    if len(records) < max(cfg.inputs.n, 2):
        raise InputError(
            f"{cfg.inputs.data}: {len(records)} records, fewer than --n {cfg.inputs.n} (at least 2 are "
            "needed to bootstrap over examples)"
        )
    check_same_architecture(cfg.tuned, cfg.base)
    loaded = load_multimodal(cfg.tuned, cfg.inputs.device)
    model, sites = loaded.model, loaded.sites
    swap = NormSwap(model, differing_parameters(model, cfg.base))
    units = norm_units(model, sites)
    batches = probe_batches(cfg.inputs, loaded.processor)
    plan = conditions(units, sites.num_layers, cfg.cumulative)
    items = tracked(plan, cfg.inputs.progress, "patching norms")
    tok = loaded.processor.tokenizer
    stop = {tok.eos_token_id, tok.pad_token_id} - {None}
    cache: dict[frozenset[str], tuple[torch.Tensor, torch.Tensor]] = {}
    results: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    keep = None
    start = time.perf_counter()
    try:
        for group, key, spec in items:
            names = _effective(spec, swap.changed)
            if names not in cache:
                swap.set(names)
                losses, counts, hits = eval_losses(model, sites, batches, cfg.inputs.device, stop)
                keep = counts > 0 if keep is None else keep
                cache[names] = (losses, hits)
            results[(group, key)] = cache[names]
    finally:
        swap.restore()
    if keep is None or int(keep.sum()) < 2:
        raise InputError(f"{cfg.inputs.data}: fewer than 2 examples with answer tokens")
    if cfg.activations:
        batches_seen = tracked(batches, cfg.inputs.progress, "patching norm outputs by token kind")
        image_id = loaded.processor.tokenizer.convert_tokens_to_ids(IMAGE)
        acts = activation_patching(model, sites, swap, batches_seen, cfg.inputs.device, stop, image_id)
        results.update({("activation", key): value for key, value in acts.items()})
    seconds = time.perf_counter() - start
    accuracy = {k: float(v[1][keep].double().mean()) for k, v in results.items()}
    results = {k: v[0][keep] for k, v in results.items()}
    record = _record(cfg, units, swap, results, accuracy, len(cache), seconds)
    # per batch, one tuned pass and one per unit and token kind
    record["activation_passes"] = len(batches) * (1 + len(units) * len(TOKEN_KINDS)) if cfg.activations else 0
    _write(cfg, record)
    return PatchResult.from_json(record)


def _record(
    cfg: PatchConfig, units, swap: NormSwap, results: dict, accuracy: dict, passes: int, seconds: float
) -> dict:
    """`results` / `accuracy`: per condition (group, key), the per-example losses / the answer accuracy."""
    lb, lt = results[("base", None)], results[("tuned", None)]
    idx = resample_indices(lb.numel(), cfg.bootstrap, cfg.bootstrap_seed)
    rows = []
    for unit, names in units.items():
        kind, _, layer = unit.partition(".")
        into, out = results[("into_base", unit)], results[("out_of_tuned", unit)]
        rows.append(
            {
                "unit": unit,
                "kind": kind,
                "layer": int(layer) if layer else None,
                "params": list(names),
                "changed": bool(swap.changed & set(names)),
                "into_base": {
                    "loss": float(into.mean()),
                    "accuracy": accuracy[("into_base", unit)],
                    "recovered": fraction(lb, into, lb, lt, idx),
                },
                "out_of_tuned": {
                    "loss": float(out.mean()),
                    "accuracy": accuracy[("out_of_tuned", unit)],
                    "lost": fraction(out, lt, lb, lt, idx),
                },
            }
        )
    cumulative = {
        side: [
            {
                "k": k,
                "loss": float(v.mean()),
                "accuracy": accuracy[(group, k)],
                "recovered": fraction(lb, v, lb, lt, idx),
            }
            for (group, k), v in results.items()
            if group == side
        ]
        for side in ("bottom", "top")
        if cfg.cumulative
    }
    activations = [
        {
            "unit": unit,
            "kind": unit.partition(".")[0],
            "layer": int(unit.partition(".")[2]) if "." in unit else None,
            "tokens": tokens,
            "loss": float(v.mean()),
            "accuracy": accuracy[(group, (unit, tokens))],
            "recovered": fraction(lb, v, lb, lt, idx),
        }
        for (group, (unit, tokens)), v in ((k, v) for k, v in results.items() if k[0] == "activation")
    ]
    in_units = {n for names in units.values() for n in names}
    config = saved_config(asdict(cfg))
    config["tuned"] = saved_path(cfg.tuned, cfg.out)
    record = {
        "config": config,
        "examples": int(lb.numel()),
        "losses": {"base": float(lb.mean()), "tuned": float(lt.mean())},
        "accuracy": {"base": accuracy[("base", None)], "tuned": accuracy[("tuned", None)]},
        "gap": gap(lb, lt, idx),
        "units": rows,
        "cumulative": cumulative,
        "activations": activations,
        "other_changed": sorted(swap.changed - in_units),
        "forward_passes": passes,
        "seconds": seconds,
        "provenance": provenance(seed=cfg.inputs.seed),
    }
    record["summary"] = _summary(record)
    return record


def _summary(record: dict) -> dict:
    """Headline numbers: the unit recovering the most, and the recovered fractions summed per layer."""
    per_layer: dict[int, float] = {}
    best = None
    for row in record["units"]:
        value = row["into_base"]["recovered"]["value"]
        if value is None:
            continue
        if row["layer"] is not None:
            per_layer[row["layer"]] = per_layer.get(row["layer"], 0.0) + value
        if best is None or value > best[1]:
            best = (row["unit"], value)
    return {
        "defined": record["gap"]["value"] != 0,
        "changed_units": sum(r["changed"] for r in record["units"]),
        "best_unit": best[0] if best else None,
        "best_recovered": best[1] if best else None,
        "recovered_per_layer": {str(k): v for k, v in sorted(per_layer.items())},
        "activations_best": _best_by_tokens(record.get("activations", [])),
    }


def _best_by_tokens(rows: list[dict]) -> dict[str, dict]:
    """Per token kind, the norm output whose patching into the base recovers the most."""
    best: dict[str, dict] = {}
    for row in rows:
        value = row["recovered"]["value"]
        held = best.get(row["tokens"])
        if value is not None and (held is None or value > held["recovered"]):
            best[row["tokens"]] = {"unit": row["unit"], "recovered": value}
    return best


CSV_COLUMNS = (
    "condition",
    "unit",
    "layer",
    "changed",
    "loss",
    "accuracy",
    "fraction",
    "ci95_low",
    "ci95_high",
)


def _csv_rows(record: dict):
    """patch.csv: each unit into the base and out of the tuned model, the cumulative curves, then the
    activation patching by token kind."""
    for row in record["units"]:
        for cond, stat in (("into_base", "recovered"), ("out_of_tuned", "lost")):
            f = row[cond][stat]
            lo, hi = f["ci95"] or (None, None)
            yield [cond, row["unit"], row["layer"], row["changed"], row[cond]["loss"], row[cond]["accuracy"],
                   f["value"], lo, hi]  # fmt: skip
    for side, points in record["cumulative"].items():
        for p in points:
            f = p["recovered"]
            lo, hi = f["ci95"] or (None, None)
            unit = f"layers {p['k']}+" if side == "top" else f"layers 0-{p['k']}"
            yield [side, unit, p["k"], "", p["loss"], p["accuracy"], f["value"], lo, hi]
    for a in record["activations"]:
        f = a["recovered"]
        lo, hi = f["ci95"] or (None, None)
        yield [
            f"activation:{a['tokens']}",
            a["unit"],
            a["layer"],
            "",
            a["loss"],
            a["accuracy"],
            f["value"],
            lo,
            hi,
        ]


def _write(cfg: PatchConfig, record: dict) -> None:
    from lnprobe.report.patch import patch_figures

    with cfg.output().build() as tmp:
        write_json(tmp / "patch.json", record)
        write_csv(tmp / "patch.csv", CSV_COLUMNS, _csv_rows(record))
        patch_figures(record, tmp)
