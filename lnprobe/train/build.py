"""The model a training run trains: loaded (or built on the meta device by the sharded large-model start),
its regime applied, a resumed delta copied in, fp32 master copies of the trainable parameters, activation
checkpointing. Below the run's set-up (lnprobe.train.setup) and the sharding (lnprobe.train.shard,
shard_start), which both build models through it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lnprobe.checkpoints.delta import load_delta_tensors, read_delta
from lnprobe.errors import InputError
from lnprobe.models import load
from lnprobe.regimes import RegimeOptions, apply_regime
from lnprobe.train.config import TrainConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def model_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    if cfg.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[cfg.dtype]


def build_model(cfg: TrainConfig, source: str, options: RegimeOptions, dtype, device, delta: Path | None):
    """Load `source`, apply the regime, copy a resumed delta in, keep trainable params in fp32.
    Returns (loaded, applied)."""
    loaded = load(source, dtype=dtype, device=device)
    if loaded.processor is None:
        raise InputError(f"{source}: has no processor files (needed to tokenise the data)")
    return loaded, finish_model(cfg, loaded.model, options, delta)


def finish_model(cfg: TrainConfig, model: nn.Module, options: RegimeOptions, delta: Path | None):
    """Apply the regime to a built model, copy a resumed delta in, keep trainable params in fp32, set up
    checkpointing and training mode (on the meta device too). Returns the applied regime."""
    applied = apply_regime(model, cfg.regime, options)
    params = dict(applied.model.named_parameters())
    if delta is not None:
        tensors = load_delta_tensors(delta, read_delta(delta), set(applied.trainable))
        with torch.no_grad():
            for name, tensor in tensors.items():
                params[name].copy_(tensor)
    for name in applied.trainable:  # fp32 master copies
        params[name].data = params[name].data.float()
    if cfg.grad_ckpt == "on":  # "auto" is planned once the data is read (lnprobe.train.memory)
        enable_checkpointing(applied.model, cfg.ckpt_every)
    applied.model.train()
    return applied


def enable_checkpointing(model: nn.Module, every_n_layers: int = 1) -> None:
    """Non-reentrant activation checkpointing of the decoder layers (every n-th layer)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for config in (base.config, getattr(base.config, "text_config", None)):
        if config is not None:
            config.use_cache = False  # no KV cache while training (and no warning about it)
    enable = getattr(base, "activation_checkpointing_enable", None)
    if enable is not None:
        enable({"use_reentrant": False}, every_n_layers=every_n_layers)
    else:  # transformers < 5
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # transformers also hooks every input embedding (the vision tower's patch embedding too) to output
    # requires_grad=True, a work-around for *reentrant* checkpointing; with non-reentrant checkpointing it
    # only makes the frozen vision tower build a graph and back-propagate. Remove those hooks.
    if hasattr(base, "disable_input_require_grads"):
        base.disable_input_require_grads()
