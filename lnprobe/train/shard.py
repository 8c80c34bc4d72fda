"""`--shard fsdp`: parameters, gradients and optimizer state sharded over the processes with PyTorch's own
FSDP2 (`torch.distributed.fsdp.fully_shard`).

Each decoder layer, each vision layer and the root (the trainer's loss module: embeddings, connector, final
norm, head and whatever else is left) is one unit: its parameters live as `DTensor` shards (dimension 0
split over the processes), are all-gathered for its forward and backward, and its gradients are
reduce-scattered, averaged over the processes as DDP's are, so the trainer's loss scaling (sum of answer-token
losses x processes / global target tokens) gives the same gradient as one process on the global batch. The
optimizer is rebuilt over the sharded parameters (same groups and settings). On CUDA the units compute in
bf16 and reduce in fp32 (`MixedPrecisionPolicy`); on CPU everything stays fp32 and processes talk over gloo.

`FsdpAccelerator` stands in for the trainer's `accelerate.Accelerator`: process index and count, barriers and
reductions come from accelerate (which starts the process group under torchrun); preparing, gradient sync,
backward and clipping are FSDP2's. Accelerate's own FSDP path is not used: on CPU it silently falls back
to DDP or one process. A single process (no torchrun) gets a one-process group of its own. With more than
one process only the main one loads the weights (lnprobe.train.shard_start).
"""

from __future__ import annotations

import contextlib
from functools import partial

import torch
import torch.distributed as dist
from torch import nn

from lnprobe.train import shard_start as start
from lnprobe.train.build import build_model

PARAM_DTYPE = torch.bfloat16  # the units' compute dtype on CUDA
REDUCE_DTYPE = torch.float32


def init_group(device: torch.device) -> bool:
    """The default process group: torchrun's (already started by accelerate) or, in a lone process, a
    one-process group (gloo on CPU, nccl on CUDA). True when it started one."""
    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return True


def shard_modules(root: nn.Module, model: nn.Module, sites, device: torch.device, materialize=None) -> None:
    """fully_shard each vision layer and decoder layer of `model`, then `root` (which holds `model`);
    `materialize()`, when given, runs once every unit is sharded (the large-model start's weights)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kwargs: dict = {"mesh": mesh}
    if device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=PARAM_DTYPE, reduce_dtype=REDUCE_DTYPE)
    for name in (*sites.vision_layers, *sites.layers):
        fully_shard(model.get_submodule(name), **kwargs)
    fully_shard(root, **kwargs)
    if materialize is not None:
        materialize()
    # mark `root` as the root now: FSDP2 takes the first unit to run forward as the root, and evaluation
    # before the first training step would run a vision layer first
    root._get_fsdp_state()._lazy_init()
    _gather_root_for_bare_body_calls(root, model, sites)


def _gather_root_for_bare_body_calls(root: nn.Module, model: nn.Module, sites) -> None:
    """Evaluation calls the model's body and head directly, not through the root's forward, so nothing
    would gather the root's own parameters (embeddings, connector, head): gather them when the body starts
    without gradients. Training goes through the root's forward, which gathers them itself."""
    if not sites.vision_tower:
        return
    body = model.get_submodule(sites.vision_tower.rpartition(".")[0])

    def gather(_module, _args):
        if not torch.is_grad_enabled():
            root.unshard()

    body.register_forward_pre_hook(gather)


def rebuild_optimizer(optimizer: torch.optim.Optimizer, before: dict, root: nn.Module):
    """The same optimizer over the sharded parameters: `before` maps id(old parameter) → name in `root`."""
    after = dict(root.named_parameters())
    groups = [
        {
            **{k: v for k, v in g.items() if k != "params"},
            "params": [after[before[id(p)]] for p in g["params"]],
        }
        for g in optimizer.param_groups
    ]
    return type(optimizer)(groups)


class FsdpAccelerator:
    """The subset of `accelerate.Accelerator` the trainer uses, with FSDP2 in place of DDP."""

    sharded = True

    def __init__(self, accelerator) -> None:
        self._accelerator = accelerator
        self.own_group = init_group(accelerator.device)
        self.meta_start = False

    def build_model(self, cfg, source: str, options, dtype):
        """The model to train: with more than one process, the large-model start (lnprobe.train.shard_start:
        only the main process loads the weights, the others build the model on the meta device, and
        `prepare` hands the weights out after sharding); else every process loads `source`."""
        self.meta_start = start.wanted(cfg, source, self.num_processes)
        if self.meta_start and not self.is_main_process:
            return start.build_on_meta(cfg, source, options, dtype)
        return build_model(cfg, source, options, dtype, self.device, None)

    def release(self) -> None:
        """End the one-process group this run started (torchrun's stays)."""
        if self.own_group and dist.is_initialized():
            dist.destroy_process_group()
        self.own_group = False

    def __getattr__(self, name: str):  # process_index, num_processes, device, reduce, wait_for_everyone, ...
        return getattr(self._accelerator, name)

    def prepare(self, loss_module: nn.Module, optimizer: torch.optim.Optimizer):
        """Shard the loss module (the model inside it, unit by unit) and rebuild the optimizer over the
        shards."""
        # DDP's prepare broadcasts, FSDP2's sharding is local: wait here so that no process publishes the run
        # directory (renaming the set-up's staging directory) while another still reads its base from it
        self.wait_for_everyone()
        names = {id(p): n for n, p in loss_module.named_parameters()}
        materialize = None
        if self.meta_start:  # the main process's weights, referenced before sharding replaces them
            full = loss_module.state_dict() if self.is_main_process else {}
            materialize = partial(start.materialize, loss_module, full, self.device)
        shard_modules(loss_module, loss_module.model, loss_module.sites, self.device, materialize)
        self.root = loss_module
        return loss_module, rebuild_optimizer(optimizer, names, loss_module)

    @contextlib.contextmanager
    def no_sync(self, module: nn.Module):
        """Accumulate this micro-batch's gradients locally (reduce-scattered with the step's last one)."""
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params, max_norm: float) -> torch.Tensor:
        """Clip the gradients (DTensor shards) to total L2 norm `max_norm`; returns the norm before clipping,
        the same on every process."""
        from torch.distributed.tensor import DTensor

        norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
        return norm.full_tensor() if isinstance(norm, DTensor) else norm
