"""Parameter accounting and training-memory estimates per regime (works on the meta device: no weights).

Percentages use the paper's denominator: every parameter of the base model, vision tower included (the
same denominator for every regime, so LoRA's added adapters count in its numerator only).

The memory estimate covers what does not depend on the batch: frozen weights in the model dtype, the
trainable parameters kept in fp32 (master copies), their fp32 gradients and AdamW's two fp32 moment
buffers. Activations are excluded (they depend on batch, sequence length and checkpointing).

Sharded over N processes (`lnprobe train --shard fsdp`, FSDP2), each process holds 1/N of that state plus
the unsharded copies of the units being computed, in the model dtype: the root unit (everything outside the
decoder and vision layers: embeddings, connector, final norm, head; gathered for the whole step) and two
layer units (the one computing and the next one, prefetched), taken as the largest layer twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lnprobe.models.sites import ModelSites
from lnprobe.regimes import RegimeOptions, apply_regime

GROUPS = ("norms", "connector", "embeddings", "head", "lora", "attn", "mlp", "vision", "other")
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
class ShardedEstimate:
    """Bytes per process when the training state is sharded over `processes` (module docstring)."""

    processes: int
    state: int  # MemoryEstimate.total / processes, rounded up
    gathered: int  # root unit + 2 x the largest layer unit, unsharded, in the model dtype

    @property
    def total(self) -> int:
        return self.state + self.gathered


@dataclass(frozen=True)
class ParamsReport:
    regime: str
    total: int  # parameters of the base model, vision tower included
    trainable: int
    by_group: dict[str, int]  # trainable parameters per group (GROUPS)
    memory: MemoryEstimate
    dtype: str
    sharded: ShardedEstimate | None = None  # with `shard` processes > 1

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total

    def as_dict(self) -> dict:
        """The fields with the derived totals; `sharded` only when estimated."""
        record = {
            **asdict(self),
            "percent": self.percent,
            "memory": {**asdict(self.memory), "total": self.memory.total},
        }
        if self.sharded is None:
            record.pop("sharded")
        else:
            record["sharded"] = {**asdict(self.sharded), "total": self.sharded.total}
        return record


def group_of(name: str, sites: ModelSites) -> str:
    """Which group (`GROUPS`) a parameter name belongs to: `ModelSites.group_of`, else `other`."""
    return sites.group_of(name) or "other"


def estimate_memory(frozen: int, trainable: int, dtype: torch.dtype) -> MemoryEstimate:
    per = torch.empty((), dtype=dtype).element_size()
    return MemoryEstimate(
        frozen_weights=frozen * per,
        trainable_weights=trainable * FP32_BYTES,
        gradients=trainable * FP32_BYTES,
        optimizer=trainable * FP32_BYTES * ADAMW_STATES,
    )


def sharded_estimate(model: nn.Module, sites: ModelSites, memory: MemoryEstimate, dtype, n: int):
    """Per-process bytes with the state sharded over `n` processes (module docstring)."""
    units = [
        sum(p.numel() for p in model.get_submodule(u).parameters())
        for u in sites.layers + sites.vision_layers
    ]
    root = sum(p.numel() for p in model.parameters()) - sum(units)
    gathered = (root + 2 * max(units, default=0)) * torch.empty((), dtype=dtype).element_size()
    return ShardedEstimate(processes=n, state=-(-memory.total // n), gathered=gathered)


def regime_report(
    model: nn.Module,
    regime: str,
    options: RegimeOptions | None = None,
    dtype: torch.dtype = torch.bfloat16,
    shard: int = 1,
) -> ParamsReport:
    """Apply `regime` to `model` (mutates it) and account for its parameters and memory (per process when
    sharded over `shard` > 1 processes)."""
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
    memory = estimate_memory(frozen, trainable, dtype)
    return ParamsReport(
        regime=regime,
        total=total,
        trainable=trainable,
        by_group=by_group,
        memory=memory,
        dtype=str(dtype).removeprefix("torch."),
        sharded=sharded_estimate(applied.model, applied.sites, memory, dtype, shard) if shard > 1 else None,
    )


def params_table(
    build: Callable[[], nn.Module],
    regimes: Iterable[str],
    options: RegimeOptions | None = None,
    dtype: torch.dtype = torch.bfloat16,
    shard: int = 1,
) -> list[ParamsReport]:
    """One report per regime, each on a fresh model from `build` (use a meta-device builder at scale)."""
    return [regime_report(build(), r, options, dtype, shard) for r in regimes]


# The paper's abstract: at 13B, LayerNorm tuning trains 41.9 % fewer parameters than LoRA.
PAPER_LN_VS_LORA_PCT = -41.9
# How to read the paper's "LoRA": adapters + connector (lnprobe's `lora`), or adapters + connector + word
# embeddings + output head (its Figure 1 caption: those are trained by default for every compared option).
LORA_READINGS = {"adapters only": "lora", "paper (Figure 1)": "lora-paper"}


@dataclass(frozen=True)
class LoraComparison:
    """LN's trainable parameters against a LoRA regime's, at a rank, and the rank that gives a target."""

    reading: str
    lora_regime: str
    ln: int  # trainable parameters of the LN regime
    rank: int
    lora: int  # trainable parameters of the LoRA regime at `rank`
    per_rank: int  # LoRA's trainable parameters per unit of rank (sum of in + out over the adapted layers)
    fixed: int  # LoRA's trainable parameters that do not depend on the rank (connector, embeddings, ...)
    target_pct: float
    solved_rank: float | None  # the real rank at which (ln - lora) / lora = target (None: below rank 1)
    matching_rank: int | None  # the integer rank whose change is nearest the target
    matching_lora: int | None  # LoRA's trainable parameters at `matching_rank`, counted on the model
    matching_pct: float | None  # the change at `matching_rank`

    @property
    def pct(self) -> float:
        """LN vs LoRA at `rank`: (ln - lora) / lora, in %."""
        return change_pct(self.ln, self.lora)

    def as_dict(self) -> dict:
        return {**asdict(self), "pct": self.pct}


def change_pct(a: int, b: int) -> float:
    """How much fewer (negative) or more parameters `a` trains than `b`, in % of `b`."""
    return 100.0 * (a - b) / b


def _trainable(build: Callable[[], nn.Module], regime: str, rank: int) -> int:
    return regime_report(build(), regime, RegimeOptions(lora_rank=rank)).trainable


def lora_comparison(
    build: Callable[[], nn.Module],
    lora_regime: str,
    rank: int = 32,
    ln_regime: str = "ln",
    target_pct: float = PAPER_LN_VS_LORA_PCT,
    reading: str = "",
    counted: dict[str, ParamsReport] | None = None,
) -> LoraComparison:
    """Count LN and the LoRA regime on fresh models from `build` (meta device at scale), and solve for the
    LoRA rank at which LN trains `target_pct` % more (negative: fewer) parameters than LoRA.

    LoRA's trainable count is affine in the rank, fixed + per_rank x r (each adapted linear layer adds
    r x (in + out)); both terms are measured on the model at `rank` (the adapters' count / rank, and the
    rest), and (ln - lora(r)) / lora(r) = target gives r = (ln / (1 + target) - fixed) / per_rank. The
    nearest integer rank is counted on the model again, which checks the affine form. `counted`: reports
    at `rank` already made, by regime name (the `params` table's), so they are not counted twice."""
    counted = counted or {}
    options = RegimeOptions(lora_rank=rank)
    ln = (counted.get(ln_regime) or regime_report(build(), ln_regime, options)).trainable
    report = counted.get(lora_regime) or regime_report(build(), lora_regime, options)
    at_rank, adapters = report.trainable, report.by_group["lora"]
    if not adapters or adapters % rank:
        raise AssertionError(f"{lora_regime}: {adapters} adapter parameters at rank {rank}")
    per_rank, fixed = adapters // rank, at_rank - adapters
    wanted = ln / (1 + target_pct / 100)  # LoRA's count that gives the target
    solved = (wanted - fixed) / per_rank
    matching = matching_lora = matching_pct = None
    if solved >= 1:
        candidates = {max(1, int(solved)), int(solved) + 1}
        matching = min(candidates, key=lambda r: abs(change_pct(ln, fixed + per_rank * r) - target_pct))
        matching_lora = _trainable(build, lora_regime, matching)
        if matching_lora != fixed + per_rank * matching:
            raise AssertionError(f"{lora_regime}: trainable count is not affine in the rank")
        matching_pct = change_pct(ln, matching_lora)
    else:
        solved = None
    return LoraComparison(
        reading=reading or lora_regime, lora_regime=lora_regime, ln=ln, rank=rank, lora=at_rank,
        per_rank=per_rank, fixed=fixed, target_pct=target_pct, solved_rank=solved, matching_rank=matching,
        matching_lora=matching_lora, matching_pct=matching_pct,
    )  # fmt: skip


def lora_readings(
    build: Callable[[], nn.Module], rank: int = 32, counted: dict[str, ParamsReport] | None = None
) -> list[LoraComparison]:
    """`lora_comparison` under each reading of the paper's LoRA (LORA_READINGS)."""
    return [
        lora_comparison(build, regime, rank, reading=reading, counted=counted)
        for reading, regime in LORA_READINGS.items()
    ]
