"""`--grad-ckpt auto`: choose which decoder layers to checkpoint from one profiling forward pass.

Activation checkpointing trades time for memory: a checkpointed decoder layer keeps only its input for the
backward pass and recomputes the rest, one extra forward of that layer. The cheapest pattern is therefore
the one that checkpoints the fewest layers while the step still fits the memory budget (`--max-memory`).

The profile is one forward pass of the run's worst-case micro-batch (its `batch_size` longest examples)
without checkpointing, under autograd's saved-tensor hooks: every tensor autograd keeps for the backward
pass is counted once (by storage), except parameters and buffers, and attributed to the decoder layer
that saved it, or to the rest of the model (vision tower, connector, loss).

The backward pass runs from the top layer down, freeing each layer's activations when it is done and
recomputing a checkpointed layer just before its turn; gradients appear as it goes. With the layers C
checkpointed, the peak of a training step is predicted as

    weights + moments + max( outside + grads_outside
                               + max_j [ sum_{i<j} (input_i if i in C else kept_i)
                                         + (1 + TRANSIENT) kept_j + sum_{i>=j} grads_i ],
                             every gradient (the optimizer step) )

weights as loaded (trainable tensors as fp32 masters), AdamW's two fp32 moments and fp32 gradients of the
trainable tensors; TRANSIENT is the gradient temporaries of one layer's backward as a share of what the
layer keeps (`benchmarks/grad_ckpt_plan.py` measures it against the actual peak). The peak falls near the
top, so the cheapest m layers to checkpoint are the lowest m; the plan is the smallest m whose prediction,
times MARGIN, fits the budget.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from lnprobe.errors import InputError
from lnprobe.train.config import parse_bytes  # noqa: F401  (re-exported)

PLAN_FILE = "memory_plan.json"  # in the run directory
MARGIN = 1.1  # allocator fragmentation and temporaries the model does not count
TRANSIENT = 0.75  # a layer's backward temporaries / what it keeps (measured 0.67-0.69, rounded up)


@dataclass(frozen=True)
class MemoryProfile:
    """Bytes a training step keeps, from one profiling forward pass (see the module docstring)."""

    weights: int  # parameters and buffers as loaded (trainable ones as fp32 masters)
    moments: int  # AdamW's two fp32 moments of every trainable tensor
    grads_top: int  # fp32 gradients of trainable tensors after the decoder layers (final norm, head)
    grads_bottom: int  # ... and before them (embeddings, connector, vision tower)
    grads: tuple[int, ...]  # per decoder layer: fp32 gradients of its trainable tensors
    outside: int  # activations kept outside the decoder layers
    kept: tuple[int, ...]  # per decoder layer: activations kept without checkpointing
    inputs: tuple[int, ...]  # per decoder layer: its input hidden states

    def scaled(self, k: int) -> MemoryProfile:
        """The activations of a k-times larger batch of the same examples' length (they grow linearly)."""
        return dataclasses.replace(
            self,
            outside=k * self.outside,
            kept=tuple(k * x for x in self.kept),
            inputs=tuple(k * x for x in self.inputs),
        )

    def peak(self, checkpointed: tuple[int, ...]) -> int:
        """Predicted peak bytes of a training step with the decoder layers `checkpointed`: the largest of
        each decoder layer's turn in the backward pass and its end (every gradient)."""
        chosen, below, turns = set(checkpointed), 0, []
        for j, kept in enumerate(self.kept):
            turns.append(below + int((1 + TRANSIENT) * kept) + sum(self.grads[j:]) + self.grads_top)
            below += self.inputs[j] if j in chosen else kept
        end = self.grads_top + sum(self.grads) + self.grads_bottom
        return self.weights + self.moments + self.outside + max([*turns, below, end])


@dataclass(frozen=True)
class CheckpointPlan:
    layers: tuple[int, ...]  # the decoder layers to checkpoint
    num_layers: int
    predicted_peak: int  # bytes, before the margin
    budget: int
    profile: MemoryProfile

    def describe(self) -> str:
        gib = 2**30
        return (
            f"checkpointing {len(self.layers)} of {self.num_layers} decoder layers: predicted peak "
            f"{self.predicted_peak / gib:.2f} GiB (x{MARGIN} margin) within {self.budget / gib:.2f} GiB"
        )

    def save(self, run: Path) -> None:
        record = {**asdict(self), "margin": MARGIN, "text": self.describe()}
        (run / PLAN_FILE).write_text(json.dumps(record, indent=1) + "\n")


def plan(profile: MemoryProfile, budget: int) -> CheckpointPlan:
    """The fewest checkpointed layers (the lowest ones) whose predicted peak, times MARGIN, fits."""
    n = len(profile.kept)
    for m in range(n + 1):
        layers = tuple(range(m))
        peak = profile.peak(layers)
        if peak * MARGIN <= budget:
            return CheckpointPlan(layers, n, peak, budget, profile)
    need = profile.peak(tuple(range(n))) * MARGIN / 2**30
    raise InputError(
        f"--max-memory {budget / 2**30:.2f} GiB: the step needs about {need:.2f} GiB even with every "
        "decoder layer checkpointed (a smaller --batch-size or --max-length, or more memory)"
    )


def profile_step(model: nn.Module, sites, forward: Callable[[], torch.Tensor]) -> MemoryProfile:
    """Run `forward()` (which returns the loss, graph attached) once without checkpointing and count what
    autograd keeps, by decoder layer (`sites.layers`) and outside them."""
    layers = [model.get_submodule(name) for name in sites.layers]
    owned = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: set[int] = set()
    kept, inputs = [0] * len(layers), [0] * len(layers)
    state = {"layer": None, "outside": 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in owned and ptr not in seen:
            seen.add(ptr)
            if state["layer"] is None:
                state["outside"] += storage.nbytes()
            else:
                kept[state["layer"]] += storage.nbytes()
        return tensor

    def enter(i: int):
        def hook(module, args, kwargs):
            state["layer"] = i
            hidden = args[0] if args else kwargs.get("hidden_states")
            inputs[i] = hidden.numel() * hidden.element_size()

        return hook

    def leave(module, args, output):
        state["layer"] = None

    handles = [layer.register_forward_pre_hook(enter(i), with_kwargs=True) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(leave) for layer in layers]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = forward()
        del loss
    finally:
        for h in handles:
            h.remove()

    def grad_bytes(modules) -> int:
        return sum(4 * p.numel() for m in modules for p in m.parameters() if p.requires_grad)

    top = [model.get_submodule(n) for n in (sites.final_norm, sites.lm_head) if n]
    grads = tuple(grad_bytes([layer]) for layer in layers)
    return MemoryProfile(
        weights=sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())),
        moments=2 * grad_bytes([model]),
        grads_top=grad_bytes(top),
        grads_bottom=grad_bytes([model]) - grad_bytes(top) - sum(grads),
        grads=grads,
        outside=state["outside"],
        kept=tuple(kept),
        inputs=tuple(inputs),
    )


def device_budget(device: torch.device) -> int:
    """The memory a run may use when `--max-memory` is not given: the CUDA device's total, else the
    machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def checkpoint_layers(model: nn.Module, sites, chosen: tuple[int, ...]) -> None:
    """Non-reentrant activation checkpointing of exactly the decoder layers `chosen` (none: off)."""
    from lnprobe.train.build import enable_checkpointing

    if chosen:
        enable_checkpointing(model)
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # transformers < 4.52: the flag sits on the decoder stack, per layer is not possible
        return
    mine = {id(model.get_submodule(name)): i in chosen for i, name in enumerate(sites.layers)}
    for module in model.modules():  # the vision tower's layers too: the profile counted them whole
        if isinstance(module, GradientCheckpointingLayer):
            module.gradient_checkpointing = mine.get(id(module), False)


def measured_peak(step: Callable[[], object]) -> int:
    """Peak bytes allocated on the CPU while `step()` runs, from the allocation events of torch's profiler:
    the measurement `benchmarks/grad_ckpt_plan.py` and the tests hold the prediction against."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def auto_checkpointing(trainer) -> CheckpointPlan:
    """`--grad-ckpt auto` for a set-up trainer: profile its worst-case micro-batch (the longest examples)
    once, then checkpoint the fewest decoder layers that fit the budget; returns the plan."""
    from lnprobe.train.loss import loss_sum

    data = trainer.dataset
    longest = sorted(range(len(data)), key=lambda i: -data.lengths[i])
    size, chunk = trainer.config.batch_size, trainer.config.loss_chunk

    def profile(indices: list[int]) -> MemoryProfile:
        batch = trainer._collate(data, indices)
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout in the profile must not shift training's RNG
            return profile_step(
                trainer.model, trainer.sites, lambda: loss_sum(trainer.model, trainer.sites, batch, chunk)[0]
            )

    try:
        measured = profile(longest[:size])
    except torch.OutOfMemoryError:  # a whole unchecked forward does not fit: one example, scaled
        torch.cuda.empty_cache()
        measured = profile(longest[:1]).scaled(size)
    budget = trainer.config.max_memory
    chosen = plan(measured, parse_bytes(budget) if budget else device_budget(trainer.device))
    checkpoint_layers(trainer.model, trainer.sites, chosen.layers)
    return chosen
