"""`GradVarCallback`: gradient statistics recorded while training (issue 5's training-time probe).

Every `every` optimizer steps it takes each micro-batch's own gradient of the trainable parameters, grouped
per decoder layer (`norms.{i}`, `attn.{i}`, `mlp.{i}`, plus `final_norm`, `connector`, `embeddings`,
`head`, `lora.{i}` where trainable), into streaming `GradStats` (see `lnprobe.probes.gradvar` for the
definitions), and keeps the per-sample trace of the norm gradients. Other steps cost nothing extra.

Writes to the run directory: `gradvar.jsonl` (after each recorded step: the cumulative summary per group
with at least two samples) and, at the end, `gradvar_trace.safetensors` (`steps` [N], `norm_grads` [N, P]:
every recorded micro-batch's concatenated norm gradients, for distribution plots).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import torch
from safetensors.torch import save_file

from lnprobe.probes.gradvar import GradStats
from lnprobe.train.callbacks import Callback

TRACE_FILE = "gradvar_trace.safetensors"
SUMMARY_FILE = "gradvar.jsonl"


def _group(name: str, sites) -> str | None:
    """The group of a parameter name: per layer for norms / attention / MLP / LoRA, else its site."""
    for i, layer in enumerate(sites.layers):
        if name.startswith(layer + "."):
            if ".lora_" in name:
                return f"lora.{i}"
            if any(name.startswith(n + ".") for n in sites.layer_norms[i]):
                return f"norms.{i}"
            if name.startswith(sites.attention[i] + "."):
                return f"attn.{i}"
            if name.startswith(sites.mlp[i] + "."):
                return f"mlp.{i}"
            return None
    for site in ("final_norm", "connector", "embed_tokens", "lm_head"):
        prefix = getattr(sites, site)
        if prefix and name.startswith(prefix + "."):
            return {"embed_tokens": "embeddings", "lm_head": "head"}.get(site, site)
    return None


class GradVarCallback(Callback):
    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.stats = GradStats()
        self.trace_steps: list[int] = []
        self.trace: list[torch.Tensor] = []

    def micro_grads_at(self, step: int) -> bool:
        return step % self.every == 0

    def on_train_begin(self, trainer) -> None:
        self.groups: dict[str, list[torch.nn.Parameter]] = {}
        for name, param in trainer.model.named_parameters():
            group = _group(name, trainer.sites) if param.requires_grad else None
            if group is not None:
                self.groups.setdefault(group, []).append(param)

    def on_micro_batch(self, trainer, step: int, micro: int, batch: dict) -> None:
        if not self.micro_grads_at(step):
            return
        grads = {}
        for group, params in self.groups.items():
            parts = [p.grad.reshape(-1) for p in params if p.grad is not None]
            if parts:
                grads[group] = torch.cat(parts)
        self.stats.update(grads)
        norms = [grads[g] for g in sorted(grads, key=_order) if g.startswith("norms.") or g == "final_norm"]
        if norms:
            self.trace_steps.append(step + 1)
            self.trace.append(torch.cat(norms).float().cpu())

    def on_step_end(self, trainer, step: int, metrics: dict) -> None:
        if not self.micro_grads_at(step - 1) or not trainer.accelerator.is_main_process:
            return
        ready = {g: asdict(s) for g, s in self._summaries().items()}
        with (trainer.run / SUMMARY_FILE).open("a") as fh:
            fh.write(json.dumps({"step": step, "groups": ready}) + "\n")

    def on_train_end(self, trainer) -> None:
        if self.trace and trainer.accelerator.is_main_process:
            save_file(
                {"steps": torch.tensor(self.trace_steps), "norm_grads": torch.stack(self.trace)},
                str(trainer.run / TRACE_FILE),
            )

    def _summaries(self):
        from lnprobe.probes.gradvar import summarize

        return {g: summarize(acc) for g, acc in self.stats.groups.items() if acc.count >= 2}


def _order(group: str) -> tuple[int, str]:
    kind, _, index = group.partition(".")
    return (int(index) if index.isdigit() else 10**6, kind)
