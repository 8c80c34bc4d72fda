"""The training configuration: one frozen dataclass, from flags or a YAML/JSON file, saved with the run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, choice, from_dict, positive, ranged, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.textio import read_json, read_yaml

# Fields that may differ when a run is resumed (they do not change what is computed up to a step).
RESUMABLE_CHANGES = {
    "max_steps",
    "save_every",
    "log_every",
    "resume",
    "progress",
    "eval_every",
    "num_workers",
}


@dataclass(frozen=True)
class TrainConfig:
    """Paper defaults: AdamW, weight decay 0, cosine schedule with 3 % warmup, gradient checkpointing on."""

    model: str = "tiny"  # any load() spec, or "tiny" (a fresh tiny LLaVA saved into the run)
    regime: str = "ln"
    data: str = ""  # LLaVA JSON / JSONL
    image_folder: str | None = None  # default: the data file's folder
    template: str = "vicuna_v1"
    out: str = "runs/train"
    lr: float = positive(2e-4)
    lr_norm: float | None = positive(None)  # per-group learning rates (default: lr)
    lr_connector: float | None = positive(None)
    lr_embed: float | None = positive(None)  # word embeddings + output head
    weight_decay: float = at_least(0, 0.0)
    warmup_ratio: float = ranged(0.03, 0, 1, hi_open=True)
    max_grad_norm: float = at_least(0, 1.0)  # 0: no clipping
    epochs: int = at_least(1, 1)
    max_steps: int | None = at_least(1, None)  # optimizer steps; overrides epochs
    batch_size: int = at_least(1, 4)  # per micro-batch
    grad_accum: int = at_least(1, 1)
    max_length: int = at_least(2, 2048)
    seed: int = seed_field(0)
    grad_ckpt: bool = True
    ckpt_every: int = at_least(1, 1)  # checkpoint every n-th decoder layer (1: all)
    dtype: str = choice("auto", ("auto", "fp32", "bf16", "fp16"))  # auto: bf16 on CUDA, fp32 on CPU
    device: str = "auto"
    save_every: int = at_least(0, 0)  # optimizer steps between checkpoints (0: only at the end)
    log_every: int = at_least(1, 1)
    lora_rank: int = at_least(1, 32)
    lora_alpha: int | None = at_least(1, None)
    lora_dropout: float = ranged(0.05, 0, 1, hi_open=True)
    skip_missing: bool = False
    num_workers: int = at_least(0, 0)  # data-loading processes (0: load in the training process)
    eval_data: str | None = None  # held-out LLaVA data: mean answer-token loss, logged as eval_loss
    eval_every: int = at_least(0, 0)  # optimizer steps between evaluations (0: only at the end)
    gradvar_every: int = at_least(0, 0)  # record gradient statistics every K steps (0: off)
    loss_chunk: int = at_least(1, 4096)  # target tokens per cross-entropy chunk (logits never whole)
    progress: bool = True
    resume: str | None = None  # a run directory to continue from its latest checkpoint (it becomes --out)

    def __post_init__(self) -> None:
        validate(self)
        if not self.data:
            raise InputError("--data is required (a LLaVA JSON/JSONL file)")

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
    """A YAML or JSON mapping of TrainConfig fields."""
    path = Path(path)
    data = read_json(path, "config") if path.suffix == ".json" else read_yaml(path, "config")
    if not isinstance(data, dict):
        raise InputError(f"{path}: config must be a mapping of field: value")
    data = data.get("config", data)  # accept a saved lnprobe_config.json too
    from_dict(TrainConfig, {**data, "data": data.get("data") or "x"}, source=str(path))  # names check
    return data
