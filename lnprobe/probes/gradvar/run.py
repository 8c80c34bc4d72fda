"""The gradvar probe's runner (`lnprobe gradvar CKPT --data ... --out DIR`): gradient statistics of any
checkpoint on fixed, seeded data.

The same statistics as the training callback (`lnprobe.probes.gradvar.stats`: per group, variance = tr(Σ)/p,
mean square, noise scale tr(Σ)/|μ|²), computed without updating anything, so a base, an LN-tuned and a
fully-finetuned model can be compared on identical inputs. Gradients are taken for the chosen parameter
groups whether or not the checkpoint's regime trained them (frozen attention / MLP weights included).

Sampling unit (`unit`):
    example   one sample per example: the gradient of that example's mean answer-token loss. Examples do
              not interact in a forward pass, so the statistic does not depend on how examples are batched
              (one forward per batch, one backward per example from the retained graph).
    batch     one sample per batch: the gradient of the batch's mean answer-token loss, as a training
              micro-batch (depends on the batch size by definition).

With `activations`, also the variance of the activation gradients at each decoder layer's output (the
residual stream): each real (non-padding) token's gradient vector is a sample.

Model order and batches are seeded; the model runs in eval mode (no dropout), so reruns are identical.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass

import torch
from safetensors.torch import save_file

from lnprobe.data.llava import read_records
from lnprobe.errors import InputError
from lnprobe.io import write_json
from lnprobe.probes.gradvar.config import GradVarConfig
from lnprobe.probes.gradvar.stats import (
    TRACE_FILE,
    GradStats,
    group_kind,
    group_order,
    is_norm_group,
    pooled,
    variance_intervals,
)
from lnprobe.probes.inputs import load_multimodal, probe_batches, saved_config
from lnprobe.probes.registry import ProbeResult
from lnprobe.progress import tracked
from lnprobe.provenance import provenance


@dataclass
class GradVarResult(ProbeResult):
    """OUT/gradvar.json. `groups[g]` per parameter group (`norms.3`, `attn.0`, ...): kind, layer, count,
    numel, variance, mean_sq, noise_scale, variance_ci95; `kinds[k]` the same pooled per kind; `activations`
    per decoder layer (with `activations`); `trace_groups` the columns of each norm group in the trace."""

    FILE = "gradvar.json"
    config: dict
    definitions: dict
    samples: int
    groups: dict[str, dict]
    kinds: dict[str, dict]
    activations: dict[str, dict]
    trace_groups: dict[str, list]
    provenance: dict


def run_gradvar(cfg: GradVarConfig) -> GradVarResult:
    """Compute and write OUT/gradvar.{json,csv}, the norm-gradient trace and figures; return the result."""
    cfg.output().check()
    read_records(cfg.inputs.data)  # bad data fails before any weights are loaded
    loaded = load_multimodal(cfg.ckpt, cfg.inputs.device)
    model, sites = loaded.model, loaded.sites
    groups = select_groups(model, sites, cfg.groups)
    batches = probe_batches(cfg.inputs, loaded.processor)
    n_samples = sum(len(b["labels"]) for b in batches) if cfg.unit == "example" else len(batches)
    if n_samples < 2:
        raise InputError(f"{cfg.inputs.data}: {n_samples} gradient sample(s); a variance needs at least 2")
    acc = _Accumulator(groups, sites, cfg)
    items = tracked(batches, cfg.inputs.progress, f"gradients of {cfg.ckpt}")
    for batch in items:
        acc.add({k: v.to(cfg.inputs.device) for k, v in batch.items()}, model)
    record = acc.record(cfg)
    _write(cfg, record, acc)
    return GradVarResult.from_json(record)


def select_groups(model, sites, kinds) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """Parameters of the chosen group kinds, by group (`norms.3`, `attn.0`, ...), made to require grad;
    every other parameter is frozen (nothing is updated: gradients are read, never applied)."""
    groups: dict[str, list] = {}
    for name, param in model.named_parameters():
        group = sites.group_of(name, per_layer=True)
        keep = group is not None and group_kind(group) in kinds
        param.requires_grad_(keep)
        if keep:
            groups.setdefault(group, []).append((name, param))
    if not groups:
        raise InputError(f"the model has no parameters in the group(s) {', '.join(kinds)}")
    return dict(sorted(groups.items(), key=lambda kv: group_order(kv[0])))


class _Accumulator:
    def __init__(self, groups: dict, sites, cfg: GradVarConfig) -> None:
        self.groups, self.sites, self.cfg = groups, sites, cfg
        self.params = [p for members in groups.values() for _, p in members]
        self.stats, self.act_stats = GradStats(), GradStats()
        self.norm_groups = [g for g in groups if is_norm_group(g)]
        self.trace: list[torch.Tensor] = []

    def add(self, batch: dict, model) -> None:
        from lnprobe.train.loss import example_losses

        outs: list[torch.Tensor] = []
        hooks = []
        if self.cfg.activations:
            for name in self.sites.layers:
                hook = model.get_submodule(name).register_forward_hook(
                    lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o)
                )
                hooks.append(hook)
        try:
            with torch.enable_grad():
                losses, counts = example_losses(model, self.sites, batch)
        finally:
            for hook in hooks:
                hook.remove()
        real = batch["attention_mask"].bool()
        if self.cfg.unit == "batch":
            targets = [((losses * counts).sum() / counts.sum().clamp_min(1), real)]
        else:
            targets = [(losses[e], _only_row(real, e)) for e in range(len(losses)) if counts[e] > 0]
        outs = [o for o in outs if o.requires_grad]
        for k, (target, rows) in enumerate(targets):
            grads = torch.autograd.grad(
                target, self.params + outs, retain_graph=k < len(targets) - 1, allow_unused=True
            )
            self._add_sample(grads[: len(self.params)])
            for i, g in enumerate(grads[len(self.params) :]):
                if g is not None:
                    self.act_stats.update_rows({f"layer.{i}": g[rows].detach()})

    def _add_sample(self, grads) -> None:
        sample, i = {}, 0
        for group, members in self.groups.items():
            parts = []
            for _, p in members:
                g = grads[i]
                parts.append((g if g is not None else torch.zeros_like(p)).reshape(-1))
                i += 1
            sample[group] = torch.cat(parts).detach()
        self.stats.update(sample)
        if self.norm_groups:
            self.trace.append(torch.cat([sample[g] for g in self.norm_groups]).float().cpu())

    def record(self, cfg: GradVarConfig) -> dict:
        summaries = self.stats.summary()
        trace = torch.stack(self.trace) if self.trace else None
        slices, start = {}, 0
        for g in self.norm_groups:
            slices[g] = (start, start + summaries[g].numel)
            start += summaries[g].numel
        if trace is not None:
            slices["norms"] = (0, start)
        cis = variance_intervals(trace, slices) if trace is not None else {}
        groups = {}
        for g, s in summaries.items():
            kind, _, layer = g.partition(".")
            groups[g] = {
                "kind": group_kind(g),
                "layer": int(layer) if layer.isdigit() else None,
                **asdict(s),
                "variance_ci95": list(cis[g]) if g in cis else None,
            }
        kinds = {}
        for kind in dict.fromkeys(group_kind(g) for g in summaries):
            members = [summaries[g] for g in summaries if group_kind(g) == kind]
            kinds[kind] = {**pooled(members), "variance_ci95": list(cis[kind]) if kind in cis else None}
        return {
            "config": saved_config(
                {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
            ),
            "definitions": {
                "variance": "tr(Sigma)/p: mean per-element variance of the gradient over samples",
                "mean_sq": "mean over samples of |G|^2 / p",
                "noise_scale": "tr(Sigma)/|mu|^2 (gradient noise scale, B_simple)",
                "unit": cfg.unit,
                "variance_ci95": "estimate +- 1.96 jackknife standard errors over samples (norm groups)",
            },
            "samples": next(iter(summaries.values())).count,
            "groups": groups,
            "kinds": kinds,
            "activations": {k: asdict(v) for k, v in self.act_stats.summary().items()},
            "trace_groups": {g: list(v) for g, v in slices.items() if g != "norms"},
            "provenance": provenance(seed=cfg.inputs.seed),
        }


def _only_row(real: torch.Tensor, e: int) -> torch.Tensor:
    rows = torch.zeros_like(real)
    rows[e] = real[e]
    return rows


def _write(cfg: GradVarConfig, record: dict, acc: _Accumulator) -> None:
    from lnprobe.report.lines import gradvar_figures

    with cfg.output().build() as tmp:
        write_json(tmp / "gradvar.json", record)
        with (tmp / "gradvar.csv").open("w", newline="") as fh:
            fields = ["group", "kind", "layer", "count", "numel", "variance", "mean_sq", "noise_scale"]
            writer = csv.DictWriter(fh, fields, extrasaction="ignore")
            writer.writeheader()
            for g, row in record["groups"].items():
                writer.writerow({"group": g, **row})
            for site, row in record["activations"].items():
                writer.writerow({"group": f"activation.{site}", "kind": "activation", **row})
        if acc.trace:
            save_file({"norm_grads": torch.stack(acc.trace)}, str(tmp / TRACE_FILE))
        gradvar_figures(record, acc.trace, tmp)
