"""`GradVarCallback`: gradient statistics recorded while training (issue 5's training-time probe).

Every `every` optimizer steps it takes each micro-batch's own gradient of the trainable parameters, grouped
per decoder layer (`norms.{i}`, `attn.{i}`, `mlp.{i}`, plus `final_norm`, `connector`, `embeddings`,
`head`, `lora.{i}` where trainable), into streaming `GradStats` (see `lnprobe.probes.gradvar.stats` for the
definitions), and keeps the per-sample trace of the norm gradients. Other steps cost nothing extra.

Writes to the run directory: `gradvar.jsonl` (after each recorded step: the cumulative summary per group
with at least two samples, accumulated since `since_step`: 0, or the checkpoint a resumed run started
from) and, at the end, `gradvar_trace.safetensors` (`steps` [N], `norm_grads` [N, P]: every recorded
micro-batch's concatenated norm gradients, for distribution plots). `lnprobe train --gradvar-every K`
adds it.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import torch
from safetensors.torch import save_file

from lnprobe.probes.gradvar.stats import TRACE_FILE, GradStats, group_order, is_norm_group
from lnprobe.train.callbacks import Callback
from lnprobe.train.logs import trim_metrics

SUMMARY_FILE = "gradvar.jsonl"


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
        self.since = trainer.step  # a resumed run accumulates afresh from its checkpoint (since_step)
        path = trainer.run / SUMMARY_FILE
        if trainer.step and trainer.accelerator.is_main_process:
            trim_metrics(path, trainer.step)
        self.groups: dict[str, list[torch.nn.Parameter]] = {}
        for name, param in trainer.model.named_parameters():
            group = trainer.sites.group_of(name, per_layer=True) if param.requires_grad else None
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
        norms = [grads[g] for g in sorted(grads, key=group_order) if is_norm_group(g)]
        if norms:
            self.trace_steps.append(step + 1)
            self.trace.append(torch.cat(norms).float().cpu())

    def on_step_end(self, trainer, step: int, metrics: dict) -> None:
        if not self.micro_grads_at(step - 1) or not trainer.accelerator.is_main_process:
            return
        ready = {g: asdict(s) for g, s in self._summaries().items()}
        with (trainer.run / SUMMARY_FILE).open("a") as fh:
            fh.write(json.dumps({"step": step, "since_step": self.since, "groups": ready}) + "\n")

    def on_train_end(self, trainer) -> None:
        if self.trace and trainer.accelerator.is_main_process:
            save_file(
                {"steps": torch.tensor(self.trace_steps), "norm_grads": torch.stack(self.trace)},
                str(trainer.run / TRACE_FILE),
            )

    def _summaries(self):
        from lnprobe.probes.gradvar.stats import summarize

        return {g: summarize(acc) for g, acc in self.stats.groups.items() if acc.count >= 2}
