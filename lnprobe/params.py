"""Parameter accounting and training-memory estimates per regime (works on the meta device: no weights).

Percentages use the paper's denominator: every parameter of the base model, vision tower included (the
same denominator for every regime, so LoRA's added adapters count in its numerator only).

The memory estimate covers what does not depend on the batch: frozen weights in the model dtype, the
trainable parameters kept in fp32 (master copies), their fp32 gradients and AdamW's two fp32 moment
buffers. Activations are excluded (they depend on batch, sequence length and checkpointing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lnprobe.models.sites import ModelSites
from lnprobe.regimes import RegimeOptions, apply_regime

GROUPS = ("norms", "connector", "embeddings", "head", "lora", "attention", "mlp", "vision", "other")
FP32_BYTES = 4
ADAMW_STATES = 2  # exp_avg and exp_avg_sq


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of training state that do not depend on the batch."""

    frozen_weights: int  # frozen parameters in the model dtype
    trainable_weights: int  # trainable parameters, fp32 master copies
    gradients: int  # fp32 gradients of the trainable parameters
    optimizer: int  # AdamW moments, fp32

    @property
    def total(self) -> int:
        return self.frozen_weights + self.trainable_weights + self.gradients + self.optimizer


@dataclass(frozen=True)
class ParamsReport:
    regime: str
    total: int  # parameters of the base model, vision tower included
    trainable: int
    by_group: dict[str, int]  # trainable parameters per group (GROUPS)
    memory: MemoryEstimate
    dtype: str

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "percent": self.percent,
            "memory": {**asdict(self.memory), "total": self.memory.total},
        }


def group_of(name: str, sites: ModelSites) -> str:
    """Which group a parameter name belongs to (LoRA adapters first: they sit inside attention/MLP)."""
    if ".lora_" in name:
        return "lora"
    checks = (
        ("vision", (sites.vision_tower,)),
        ("connector", (sites.connector,)),
        ("embeddings", (sites.embed_tokens,)),
        ("head", (sites.lm_head,)),
        ("norms", sites.lm_norms()),
        ("attention", sites.attention),
        ("mlp", sites.mlp),
    )
    for group, prefixes in checks:
        if any(p and name.startswith(p + ".") for p in prefixes):
            return group
    return "other"


def estimate_memory(frozen: int, trainable: int, dtype: torch.dtype) -> MemoryEstimate:
    per = torch.empty((), dtype=dtype).element_size()
    return MemoryEstimate(
        frozen_weights=frozen * per,
        trainable_weights=trainable * FP32_BYTES,
        gradients=trainable * FP32_BYTES,
        optimizer=trainable * FP32_BYTES * ADAMW_STATES,
    )


def regime_report(
    model: nn.Module, regime: str, options: RegimeOptions | None = None, dtype: torch.dtype = torch.bfloat16
) -> ParamsReport:
    """Apply `regime` to `model` (mutates it) and account for its parameters and memory."""
    total = sum(p.numel() for p in model.parameters())
    applied = apply_regime(model, regime, options)
    by_group = dict.fromkeys(GROUPS, 0)
    trainable = frozen = 0
    for name, param in applied.model.named_parameters():
        if param.requires_grad:
            by_group[group_of(name, applied.sites)] += param.numel()
            trainable += param.numel()
        else:
            frozen += param.numel()
    return ParamsReport(
        regime=regime,
        total=total,
        trainable=trainable,
        by_group=by_group,
        memory=estimate_memory(frozen, trainable, dtype),
        dtype=str(dtype).removeprefix("torch."),
    )


def params_table(
    build: Callable[[], nn.Module],
    regimes: Iterable[str],
    options: RegimeOptions | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> list[ParamsReport]:
    """One report per regime, each on a fresh model from `build` (use a meta-device builder at scale)."""
    return [regime_report(build(), r, options, dtype) for r in regimes]
