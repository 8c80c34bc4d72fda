"""Set-up steps of a training run: the accelerator (one process, DDP or FSDP2) and the optimizer groups
(the model itself: lnprobe.train.build)."""

from __future__ import annotations

import torch
from torch import nn

from lnprobe.errors import InputError
from lnprobe.params import group_of
from lnprobe.train.config import TrainConfig
from lnprobe.train.shard import FsdpAccelerator


def make_accelerator(cfg: TrainConfig):
    """An `accelerate.Accelerator`: one process, or DDP when started by `accelerate launch` or
    `torchrun` (CPU processes talk over gloo); with `--shard fsdp` wrapped to shard with FSDP2
    (lnprobe.train.shard). Mixed precision is handled by lnprobe itself."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType

    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)  # text-only batches skip the connector
    accelerator = Accelerator(cpu=cpu, mixed_precision="no", kwargs_handlers=[ddp])
    if accelerator.distributed_type not in (
        DistributedType.NO,
        DistributedType.MULTI_CPU,
        DistributedType.MULTI_GPU,
    ):
        raise InputError(
            f"launch mode {accelerator.distributed_type.value} is not supported (lnprobe train runs in one "
            "process, data-parallel, or sharded: torchrun ... lnprobe train --shard fsdp)"
        )
    if cfg.shard == "fsdp":
        return FsdpAccelerator(accelerator)
    return accelerator


def param_groups(cfg: TrainConfig, model: nn.Module, sites, trainable) -> tuple[list[dict], list[str]]:
    """AdamW groups by learning rate (norms / connector / embeddings+head / the rest), and the parameter
    names in optimizer order."""
    lrs = {
        "norms": cfg.lr_norm,
        "connector": cfg.lr_connector,
        "embeddings": cfg.lr_embed,
        "head": cfg.lr_embed,
    }
    by_lr: dict[float, list[str]] = {}
    for name in trainable:
        by_lr.setdefault(lrs.get(group_of(name, sites)) or cfg.lr, []).append(name)
    named = dict(model.named_parameters())
    groups = [{"params": [named[n] for n in names], "lr": lr, "base_lr": lr} for lr, names in by_lr.items()]
    return groups, [n for names in by_lr.values() for n in names]
