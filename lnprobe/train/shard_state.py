"""Checkpoints of a `--shard fsdp` run, written by every process with `torch.distributed.checkpoint` (DCP).

    step-NNNNNN/
      shards/              each process's shards of the trainable parameters and of their AdamW state,
                           in safetensors files (DCP's Hugging Face writer: the shards' offsets are in each
                           file's JSON header; no pickled `.metadata` file is written or read)
      rng.safetensors      every process's torch RNG state
      trainer_state.json   step, Python RNG, config, number of processes
      (last step only)     the consolidated weights in lnprobe's usual form: a delta (partial regimes) or
                           a Hugging Face checkpoint (`full`), so `lnprobe.models.load` reads it

Frozen parameters are not saved: a resumed run rebuilds them from the base exactly. A parameter that never
received a gradient has no AdamW state; it has none in the checkpoint either, and gets none on resume
(exactly what the uninterrupted run has). DCP reshards on load, so a run may resume on another number of
processes, the accumulation adjusted so the global batch (accumulation x processes) stays the same.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from lnprobe.errors import InputError
from lnprobe.io import atomic_dir
from lnprobe.regimes import resolve_regime
from lnprobe.train import state as ckpt_io

SHARDS = "shards"
MODEL, OPTIM = "model", "optim"


def _trainable(trainer) -> dict:
    return {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}


def _state(trainer) -> dict:
    """What DCP saves: {"model": {name: parameter shard}, "optim": {name: {key: moment shard or step}}}."""
    params = _trainable(trainer)
    index = {id(p): n for n, p in params.items()}
    optim = {index[id(p)]: dict(s) for p, s in trainer.optimizer.state.items() if s}
    return {MODEL: {n: p.detach() for n, p in params.items()}, OPTIM: optim}


def _broadcast(value, trainer):
    if trainer.world == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def consolidated(trainer) -> dict:
    """The whole model's state dict (`full`) or the trainable parameters, gathered onto the main process's
    CPU (empty elsewhere). Every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    whole = resolve_regime(trainer.config.regime).whole_model
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=not whole)
    return get_model_state_dict(trainer.model, options=options)


def save_checkpoint(run: Path, step: int, trainer) -> Path:
    """Write checkpoint `step` from every process and point `latest` at it; the last step also exports
    the consolidated weights."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    trainer.accelerator.root.reshard()  # evaluation may have left the root's parameters gathered
    out, main = ckpt_io.checkpoint_dir(run, step), trainer.accelerator.is_main_process
    rng = ckpt_io.gathered_rng(trainer)
    export = consolidated(trainer) if step == trainer.total_steps else None
    with atomic_dir(out) if main else nullcontext() as tmp:
        tmp = Path(_broadcast(str(tmp) if main else None, trainer))
        writer = HuggingFaceStorageWriter(str(tmp / SHARDS), save_distributed=True)
        dcp.save(_state(trainer), storage_writer=writer)  # returns once every process has written
        if main:
            if export is not None:
                ckpt_io._save_model_part(tmp, step, trainer, export)
            ckpt_io.write_resume_state(tmp, step, trainer, rng)
    if main:
        ckpt_io.point_latest(run, out)
    trainer.accelerator.wait_for_everyone()
    return out


def restore(ckpt: Path, trainer) -> int:
    """Load the trainable parameters, their AdamW state and the RNG states of `ckpt` (resharded onto this
    run's processes); returns its step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    state = ckpt_io.read_state(ckpt)
    saved_world, saved_accum = state.get("processes", 1), state["config"]["grad_accum"]
    per_step = saved_accum * saved_world  # micro-batches per optimizer step
    if per_step != trainer.config.grad_accum * trainer.world:
        fits = per_step % trainer.world == 0
        need = f"needs --grad-accum {per_step // trainer.world}" if fits else "cannot keep it"
        raise InputError(
            f"{ckpt}: saved with accumulation {saved_accum} x {saved_world} processes; resuming on "
            f"{trainer.world} {need} (the same global batch: {per_step} micro-batches a step)"
        )
    if not (ckpt / SHARDS).is_dir():
        raise InputError(f"{ckpt}: has no {SHARDS}/ (not written by a --shard fsdp run)")
    reader = HuggingFaceStorageReader(str(ckpt / SHARDS))
    target = _targets(trainer, reader.read_metadata().state_dict_metadata)
    dcp.load(target, storage_reader=HuggingFaceStorageReader(str(ckpt / SHARDS)))
    params = _trainable(trainer)
    for name, moments in target[OPTIM].items():
        trainer.optimizer.state[params[name]] = moments
    # on another number of processes, dropout streams continue differently
    ckpt_io.restore_rng(ckpt, state, trainer.rank % saved_world)
    return int(state["step"])


def _targets(trainer, keys: dict) -> dict:
    """Tensors for DCP to load into: the parameters themselves, and fresh optimizer state for every entry
    the checkpoint holds (`keys`: DCP's metadata per key), sharded like the parameter when it has the
    parameter's shape (AdamW's moments), else whole (the step count)."""
    params = _trainable(trainer)
    missing = sorted(f"{MODEL}.{n}" for n in params if f"{MODEL}.{n}" not in keys)
    if missing:
        raise InputError(f"checkpoint lacks trainable parameters {missing[:3]} (another regime or model?)")
    optim: dict[str, dict] = {}
    for key in sorted(k for k in keys if k.startswith(f"{OPTIM}.")):
        name, _, entry = key[len(OPTIM) + 1 :].rpartition(".")
        if name not in params:
            raise InputError(f"checkpoint holds optimizer state of {name!r}, not a trainable parameter here")
        p, meta = params[name], keys[key]
        dtype = meta.properties.dtype
        optim.setdefault(name, {})[entry] = (
            torch.zeros_like(p.detach(), dtype=dtype)
            if tuple(meta.size) == tuple(p.shape)
            else torch.zeros(meta.size, dtype=dtype)
        )
    return {MODEL: {n: p.detach() for n, p in params.items()}, OPTIM: optim}
