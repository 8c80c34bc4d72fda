"""The training configuration: one frozen dataclass, from flags or a YAML/JSON file, saved with the run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from lnprobe.config import from_dict
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
    lr: float = 2e-4
    lr_norm: float | None = None  # per-group learning rates (default: lr)
    lr_connector: float | None = None
    lr_embed: float | None = None  # word embeddings + output head
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 4  # per micro-batch
    grad_accum: int = 1
    max_length: int = 2048
    seed: int = 0
    grad_ckpt: bool = True
    ckpt_every: int = 1  # checkpoint every n-th decoder layer (1: all)
    dtype: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    device: str = "auto"
    save_every: int = 0  # optimizer steps between checkpoints (0: only at the end)
    log_every: int = 1
    lora_rank: int = 32
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    skip_missing: bool = False
    num_workers: int = 0  # data-loading processes (0: load in the training process)
    eval_data: str | None = None  # held-out LLaVA data: mean answer-token loss, logged as eval_loss
    eval_every: int = 0  # optimizer steps between evaluations (0: only at the end)
    gradvar_every: int = 0  # record gradient statistics every K steps (0: off); see GradVarCallback
    loss_chunk: int = 4096  # target tokens per cross-entropy chunk (logits never materialised at once)
    progress: bool = True
    resume: str | None = None  # a run directory to continue from its latest checkpoint (it becomes --out)

    def __post_init__(self) -> None:
        checks = {
            "--lr": self.lr > 0,
            "--batch-size": self.batch_size >= 1,
            "--grad-accum": self.grad_accum >= 1,
            "--epochs": self.epochs >= 1,
            "--warmup-ratio": 0 <= self.warmup_ratio < 1,
            "--max-steps": self.max_steps is None or self.max_steps >= 1,
            "--save-every": self.save_every >= 0,
            "--loss-chunk": self.loss_chunk >= 1,
            "--ckpt-every": self.ckpt_every >= 1,
            "--eval-every": self.eval_every >= 0,
            "--gradvar-every": self.gradvar_every >= 0,
            "--num-workers": self.num_workers >= 0,
            "--dtype": self.dtype in ("auto", "fp32", "bf16", "fp16"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"invalid value for {', '.join(bad)}")
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
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot read config ({exc.strerror})") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: malformed config ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: config must be a mapping of field: value")
    data = data.get("config", data)  # accept a saved lnprobe_config.json too
    from_dict(TrainConfig, {**data, "data": data.get("data") or "x"}, source=str(path))  # names check
    return data
