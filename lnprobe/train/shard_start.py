"""The large-model start of `--shard fsdp` with more than one process: peak host memory per node about one
copy of the weights instead of one per process.

Only the main process loads the weights. The others build the same model on the meta device (no memory):
the same config, dtype, regime, fp32 master copies of the trainable parameters and activation
checkpointing. Every process then shards it (`fully_shard`, lnprobe.train.shard); the others allocate their
shards with `to_empty`, and the main process broadcasts its weights one tensor at a time, each process
keeping its chunk. (`set_model_state_dict(..., broadcast_from_rank0=True)` would do the same, but it holds
every whole tensor on every process until the last one arrives: one copy of the weights per process.)
The non-persistent buffers, which no state dict holds (the decoder's rotary `inv_freq` and
`original_inv_freq`, the vision tower's `position_ids`: every buffer registered with `persistent=False`),
are broadcast from the main process, which computed them when it built the model.

It needs a Hugging Face checkpoint as the base (a directory or hub id: the meta model is built from its
config), and not `--grad-ckpt auto` (which profiles a forward pass before sharding); otherwise every
process loads the weights as before.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from lnprobe.train.build import finish_model

ENABLED = True  # tests switch it off to compare with every process loading the weights


def wanted(cfg, source: str, world: int) -> bool:
    """Whether this run starts with the weights on the main process only."""
    from lnprobe.models.load import checkpoint_kind, resolve_run

    return (
        ENABLED
        and world > 1
        and cfg.grad_ckpt != "auto"
        and checkpoint_kind(resolve_run(source))
        in (
            "hf",
            "hub",
        )
    )


def build_on_meta(cfg, source: str, options, dtype: torch.dtype):
    """What `lnprobe.train.setup.build_model` gives for `source`, on the meta device: (loaded, applied)."""
    from lnprobe.errors import InputError
    from lnprobe.models.hf import quiet_transformers
    from lnprobe.models.load import Loaded, _finish, _load_processor, auto_class, resolve_config, resolve_run

    source = resolve_run(source)
    config = resolve_config(source)
    with torch.device("meta"), quiet_transformers():
        model = _finish(auto_class(config).from_config(config, dtype=dtype)).eval()
    processor = _load_processor(source, online=False, trust_remote_code=False)
    if processor is None:
        raise InputError(f"{source}: has no processor files (needed to tokenise the data)")
    return Loaded(model, processor, source, "hf"), finish_model(cfg, model, options, None)


def non_persistent_buffers(module: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, owning module, buffer name) of every buffer registered with `persistent=False`."""
    found = []
    for prefix, owner in module.named_modules():
        for name in sorted(owner._non_persistent_buffers_set):
            if owner._buffers.get(name) is not None:
                found.append((f"{prefix}.{name}" if prefix else name, owner, name))
    return found


def materialize(root: nn.Module, full: dict, device: torch.device) -> None:
    """After `fully_shard`: allocate the meta processes' shards on `device`, fill every process's shards
    and buffers from `full` (the main process's state dict; empty elsewhere), then the non-persistent
    buffers from the main process's."""
    if any(t.is_meta for t in (*root.parameters(), *root.buffers())):
        root.to_empty(device=device)
    with torch.no_grad():
        for key, target in root.state_dict().items():
            _fill(target, full.get(key), device)
        for _, owner, name in non_persistent_buffers(root):
            _fill(owner._buffers[name], owner._buffers[name] if dist.get_rank() == 0 else None, device)


def _fill(target: torch.Tensor, source: torch.Tensor | None, device: torch.device) -> None:
    """Broadcast the main process's whole tensor `source`, one tensor at a time (so no process ever holds
    more than its shards and one whole tensor), and copy this process's part of it into `target` (a
    `DTensor` shard of a parameter or a whole buffer). `source` is None except on the main process."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    whole = whole_tensor(target, source, device)
    dist.broadcast(whole, src=0)
    if isinstance(target, DTensor):  # this process's chunk: split locally, no further communication
        part = distribute_tensor(whole, target.device_mesh, target.placements, src_data_rank=None)
        target.to_local().copy_(part.to_local())
    elif target.data_ptr() != whole.data_ptr():
        target.copy_(whole)
    if dist.get_rank() != 0:  # free the receive buffer now: gloo keeps the last one referenced until the
        whole.untyped_storage().resize_(0)  # next collective, so two whole tensors were alive at once


def whole_tensor(target: torch.Tensor, source: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """The one whole tensor a process holds while `target` is filled: the main process's weight in the
    target's dtype, an empty receive buffer of the whole shape on the others (the set-up's only whole
    tensors on a process that did not load the weights; tests count them)."""
    if dist.get_rank() == 0:
        return source.detach().to(device=device, dtype=target.dtype).contiguous()
    return torch.empty(target.shape, dtype=target.dtype, device=device)
