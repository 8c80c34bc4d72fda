"""The training configuration: one frozen dataclass, from flags or a YAML/JSON file, saved with the run."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import (
    at_least,
    choice,
    from_dict,
    option,
    positive,
    ranged,
    read_config_file,
    seed_field,
    validate,
)
from lnprobe.errors import InputError

# Fields that may differ when a run is resumed (they do not change what is computed up to a step).
RESUMABLE_CHANGES = {
    "max_steps",
    "save_every",
    "log_every",
    "resume",
    "progress",
    "eval_every",
    "num_workers",
    "grad_ckpt",  # checkpointing recomputes, it does not change what is computed
    "ckpt_every",
    "max_memory",
    "final_optimizer",
}
# With --shard fsdp a run may resume on another number of processes: the accumulation may change with it as
# long as the global batch (accumulation x processes) stays (checked when the checkpoint is read).
SHARDED_RESUMABLE_CHANGES = RESUMABLE_CHANGES | {"grad_accum"}


@dataclass(frozen=True)
class TrainConfig:
    """Paper defaults: AdamW, weight decay 0, cosine schedule with 3 % warmup, gradient checkpointing on."""

    model: str = option("tiny", "load() spec, or 'tiny' (a fresh tiny LLaVA saved into the run).")
    regime: str = option(
        "ln",
        "Training regime: a preset or atoms joined by '+', e.g. lora+connector+embed+head (lnprobe regimes).",
    )
    data: str = option("", "LLaVA JSON/JSONL data file.")
    image_folder: str | None = option(
        None, "Folder the records' image paths are relative to (default: the data file's)."
    )
    template: str = option("vicuna_v1", "Chat template: vicuna_v1, chat, llama_2 or plain.")
    out: str = option("runs/train", "Run directory (checkpoints, metrics.jsonl, config).")
    lr: float = positive(2e-4, "Learning rate (peak of the cosine schedule).")
    lr_norm: float | None = positive(None, "Learning rate for norms (default: --lr).")
    lr_connector: float | None = positive(None, "Learning rate for the connector (default: --lr).")
    lr_embed: float | None = positive(
        None, "Learning rate for word embeddings and output head (default: --lr)."
    )
    weight_decay: float = at_least(0, 0.0, "AdamW weight decay.")
    warmup_ratio: float = ranged(0.03, 0, 1, hi_open=True, help="Share of the steps spent warming up.")
    max_grad_norm: float = at_least(0, 1.0, "Gradient-norm clipping (0: no clipping).")
    epochs: int = at_least(1, 1, "Passes over the data (unless --max-steps).")
    max_steps: int | None = at_least(1, None, "Optimizer steps (overrides --epochs).")
    batch_size: int = at_least(1, 4, "Micro-batch size.")
    grad_accum: int = at_least(1, 1, "Micro-batches per optimizer step.")
    max_length: int = at_least(2, 2048, "Tokens per example (longer ones are cut from the end).")
    seed: int = seed_field(0, "Seed of initialisation, data order and dropout.")
    grad_ckpt: str = choice(
        "on",
        ("on", "off", "auto"),
        "Activation checkpointing of the decoder layers: on (every --ckpt-every-th), off, or auto (the "
        "fewest layers whose predicted peak fits --max-memory, from one profiling pass).",
    )
    ckpt_every: int = at_least(1, 1, "With --grad-ckpt on: checkpoint every n-th decoder layer (1: all).")
    max_memory: str | None = option(
        None, "With --grad-ckpt auto: the memory budget, e.g. 40GiB (default: the device's memory)."
    )
    dtype: str = choice(
        "auto", ("auto", "fp32", "bf16", "fp16"), "auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16."
    )
    device: str = option("auto", "auto (CUDA when available), cpu or cuda.")
    save_every: int = at_least(0, 0, "Checkpoint every N optimizer steps (0: only at the end).")
    final_optimizer: bool = option(
        True,
        "Keep the optimizer moments in the last checkpoint, so the finished run can be extended with a "
        "larger --max-steps; --no-final-optimizer leaves them out (with AdamW 2x the trainable weights).",
    )
    log_every: int = at_least(1, 1, "Log the loss every N optimizer steps.")
    lora_rank: int = at_least(1, 32, "LoRA rank.")
    lora_alpha: int | None = at_least(1, None, "LoRA alpha (default: 2 x rank).")
    lora_dropout: float = ranged(0.05, 0, 1, hi_open=True, help="LoRA dropout.")
    skip_missing: bool = option(
        False, "Skip records whose image file is missing (counted) instead of stopping."
    )
    num_workers: int = at_least(0, 0, "Data-loading processes (0: load in the training process).")
    eval_data: str | None = option(
        None,
        "Held-out LLaVA data: its answer-token loss (eval_loss) and first-answer accuracy (eval_accuracy).",
    )
    eval_every: int = at_least(0, 0, "Evaluate every N optimizer steps (0: only at the end).")
    gradvar_every: int = at_least(0, 0, "Record gradient statistics every K steps to gradvar.jsonl (0: off).")
    loss_chunk: int = at_least(1, 4096, "Target tokens per cross-entropy chunk (the logits are never whole).")
    shard: str = choice(
        "none",
        ("none", "fsdp"),
        "fsdp: shard parameters, gradients and optimizer state over the processes with PyTorch FSDP2 (start "
        "with torchrun; checkpoints are sharded, resumable on another number of processes).",
    )
    progress: bool = option(True, "Show a progress bar.")
    resume: str | None = option(
        None, "RUN_DIR: continue that run from its latest checkpoint (same config; it is the --out)."
    )

    def __post_init__(self) -> None:
        if isinstance(self.grad_ckpt, bool):  # configs written before `auto` (and the Python API)
            object.__setattr__(self, "grad_ckpt", "on" if self.grad_ckpt else "off")
        validate(self)
        if self.max_memory is not None:
            parse_bytes(self.max_memory)  # fail fast on a malformed size
        if not self.data:
            raise InputError("--data is required (a LLaVA JSON/JSONL file)")
        if self.shard == "fsdp" and not self.final_optimizer:
            raise InputError("--no-final-optimizer: not available with --shard fsdp (its shards hold both)")
        if self.shard == "fsdp" and self.gradvar_every:
            raise InputError("--gradvar-every: not available with --shard fsdp (gradients are sharded)")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def resolved(self) -> TrainConfig:
        """With `resume`, the run directory is the resumed one (`--out` may be omitted or the same)."""
        if not self.resume:
            return self
        if self.out not in (TrainConfig.out, self.resume):
            raise InputError(f"--out {self.out} and --resume {self.resume} name different run directories")
        return self.replace(out=self.resume)


def load_config_file(path: str | Path) -> dict:
    """A YAML or JSON mapping of TrainConfig fields (a saved lnprobe_config.json too), names checked."""
    data = read_config_file(path)
    from_dict(TrainConfig, {**data, "data": data.get("data") or "x"}, source=str(path))  # names check
    return data


UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(text: str) -> int:
    """'40GiB', '512 MB', '1e9' → bytes (InputError naming --max-memory otherwise)."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", text or "")
    unit = UNITS.get(match.group(2).lower()) if match else None
    try:
        value = float(match.group(1)) * unit if match and unit else -1.0
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise InputError(f"--max-memory {text!r}: expected a size such as 40GiB, 512MB or 1e9 (bytes)")
    return int(value)
