"""The training loop behind `lnprobe train`.

Paper defaults: AdamW (weight decay 0), cosine schedule with 3 % warmup, gradient checkpointing
(non-reentrant), bf16 + TF32 on CUDA, fp32 on CPU, trainable parameters kept in fp32 when the model is bf16,
separate learning rates for norms / connector / embeddings+head. Gradient accumulation normalises by the
number of target tokens of the whole optimizer step, so accumulating k micro-batches equals one k-times
larger batch. Resuming from a checkpoint reproduces the uninterrupted run bit for bit on CPU.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lnprobe.config import save_config
from lnprobe.data.llava import LengthGroupedBatches, LlavaDataset, collate, read_records
from lnprobe.data.templates import TEMPLATES
from lnprobe.errors import InputError
from lnprobe.models import load
from lnprobe.models.delta import load_delta_tensors, read_delta
from lnprobe.models.tiny import TinyConfig, save_tiny
from lnprobe.params import group_of
from lnprobe.regimes import REGIMES, RegimeOptions, apply_regime
from lnprobe.train import state as ckpt_io
from lnprobe.train.callbacks import Callback
from lnprobe.train.config import RESUMABLE_CHANGES, TrainConfig
from lnprobe.train.loss import loss_sum

METRICS_FILE = "metrics.jsonl"


class TrainingDiverged(InputError):
    """The loss became NaN/inf; the last good checkpoint is left intact."""


@dataclass
class TrainResult:
    run: Path
    checkpoint: Path
    steps: int
    final_loss: float


def cosine_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _device_and_dtype(cfg: TrainConfig) -> tuple[torch.device, torch.dtype]:
    cuda = torch.cuda.is_available()
    device = torch.device(("cuda" if cuda else "cpu") if cfg.device == "auto" else cfg.device)
    if cfg.dtype == "auto":
        return device, torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.dtype]


class Trainer:
    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.run = Path(config.out)
        REGIMES.get(config.regime), TEMPLATES.get(config.template)  # fail fast on unknown names
        self.resume_from = self._check_run_dir()
        read_records(config.data)  # fail on bad data before anything is loaded or written
        self.device, self.dtype = _device_and_dtype(config)
        torch.manual_seed(config.seed)
        self.base_spec = self._base_spec()
        self.regime_options = RegimeOptions(config.lora_rank, config.lora_alpha, config.lora_dropout)
        self._build_model()
        self.dataset = LlavaDataset(
            config.data,
            self.processor,
            config.template,
            config.max_length,
            config.image_folder,
            config.skip_missing,
        )
        self.batches = LengthGroupedBatches(self.dataset.lengths, config.batch_size, config.seed)
        self.steps_per_epoch = len(self.batches) // config.grad_accum
        if self.steps_per_epoch == 0:
            raise InputError(
                f"{config.data}: {len(self.dataset)} records are fewer than one optimizer step "
                f"(batch {config.batch_size} x accumulation {config.grad_accum})"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(self._param_groups(), weight_decay=config.weight_decay)
        self.step = ckpt_io.restore(self.resume_from, self) if self.resume_from else 0

    # -- set-up ---------------------------------------------------------------------------------------
    def _check_run_dir(self) -> Path | None:
        latest = ckpt_io.latest_checkpoint(self.run) if self.run.is_dir() else None
        if not self.config.resume:
            if latest is not None:
                raise InputError(
                    f"{self.run}: already holds a run (pass --resume to continue it, or another --out)"
                )
            return None
        if latest is None:
            raise InputError(f"{self.run}: no checkpoint to resume from")
        saved = ckpt_io.read_state(latest)["config"]
        mine = asdict(self.config)
        changed = sorted(k for k in mine if k not in RESUMABLE_CHANGES and saved.get(k) != mine[k])
        if changed:
            raise InputError(f"{self.run}: --resume with a different config ({', '.join(changed)} differ)")
        return latest

    def _base_spec(self) -> str:
        if self.config.model != "tiny":
            path = Path(self.config.model)
            return str(path.resolve()) if path.exists() else self.config.model
        base = self.run / "base"
        if not base.is_dir():
            save_tiny(base, TinyConfig(seed=self.config.seed))
        return str(base.resolve())

    def _build_model(self) -> None:
        full_resume = self.resume_from is not None and self.config.regime == "full"
        source = str(self.resume_from) if full_resume else self.base_spec
        loaded = load(source, dtype=self.dtype, device=self.device)
        self.processor = loaded.processor
        if self.processor is None:
            raise InputError(f"{source}: has no processor files (needed to tokenise the data)")
        applied = apply_regime(loaded.model, self.config.regime, self.regime_options)
        self.model, self.sites, self.trainable = applied.model, applied.sites, applied.trainable
        params = dict(self.model.named_parameters())
        if self.resume_from is not None and not full_resume:
            tensors = load_delta_tensors(self.resume_from, read_delta(self.resume_from), set(self.trainable))
            with torch.no_grad():
                for name, tensor in tensors.items():
                    params[name].copy_(tensor)
        for name in self.trainable:  # fp32 master copies
            params[name].data = params[name].data.float()
        if self.config.grad_ckpt:
            self._enable_checkpointing()
        self.model.train()

    def _enable_checkpointing(self) -> None:
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        for config in (base.config, getattr(base.config, "text_config", None)):
            if config is not None:
                config.use_cache = False  # no KV cache while training (and no warning about it)
        enable = getattr(base, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:  # transformers < 5
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def _param_groups(self) -> list[dict]:
        cfg = self.config
        lrs = {
            "norms": cfg.lr_norm,
            "connector": cfg.lr_connector,
            "embeddings": cfg.lr_embed,
            "head": cfg.lr_embed,
        }
        groups: dict[float, list] = {}
        self.param_names = []
        named = dict(self.model.named_parameters())
        for name in self.trainable:
            lr = lrs.get(group_of(name, self.sites)) or cfg.lr
            groups.setdefault(lr, []).append(name)
        ordered = []
        for lr, names in groups.items():
            ordered.append({"params": [named[n] for n in names], "lr": lr, "base_lr": lr})
            self.param_names += names
        return ordered

    # -- the loop ------------------------------------------------------------------------------------
    def micro_batches(self, step: int) -> list[dict]:
        epoch, k = divmod(step, self.steps_per_epoch)
        accum = self.config.grad_accum
        order = self.batches.epoch(epoch)[k * accum : (k + 1) * accum]
        tok = self.processor.tokenizer
        image_id = tok.convert_tokens_to_ids("<image>")
        return [
            {
                key: v.to(self.device)
                for key, v in collate(
                    [self.dataset[i] for i in idx],
                    tok.pad_token_id,
                    image_id,
                    self.dataset.encoder.n_image_tokens,
                ).items()
            }
            for idx in order
        ]

    def train(self) -> TrainResult:
        cfg = self.config
        self.run.mkdir(parents=True, exist_ok=True)
        if self.resume_from is None:
            save_config(cfg, self.run, seed=cfg.seed, base=self.base_spec)
        self._trim_metrics()
        for cb in self.callbacks:
            cb.on_train_begin(self)
        last = self.resume_from
        loss = float("nan")
        with self._progress() as progress:
            task = (
                progress.add_task(
                    "train", total=self.total_steps, completed=self.step, loss=float("nan"), lr=0.0, tps=0.0
                )
                if progress
                else None
            )
            while self.step < self.total_steps:
                metrics = self._one_step()
                loss = metrics["loss"]
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._log(metrics)
                if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == self.total_steps:
                    last = ckpt_io.save_checkpoint(self.run, self.step, self)
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step, metrics)
                if progress:
                    progress.update(task, advance=1, loss=loss, lr=metrics["lr"], tps=metrics["tokens_per_s"])
        for cb in self.callbacks:
            cb.on_train_end(self)
        return TrainResult(self.run, last, self.step, loss)

    def _one_step(self) -> dict:
        start = time.perf_counter()
        batches = self.micro_batches(self.step)
        n_total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        micro_grads = any(cb.wants_micro_grads for cb in self.callbacks)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        accumulated = [None] * len(params) if micro_grads else None
        total = 0.0
        for m, batch in enumerate(batches):
            with self._autocast():
                s, _ = loss_sum(self.model, self.sites, batch, self.config.loss_chunk)
            (s / n_total).backward()
            total += s.item()
            if micro_grads:
                for cb in self.callbacks:
                    cb.on_micro_batch(self, self.step, m, batch)
                for i, p in enumerate(params):
                    if p.grad is not None:
                        accumulated[i] = p.grad if accumulated[i] is None else accumulated[i] + p.grad
                        p.grad = None
        if micro_grads:
            for p, g in zip(params, accumulated, strict=True):
                p.grad = g
        loss = total / n_total
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss} at step {self.step + 1}; the last good checkpoint is "
                f"{ckpt_io.latest_checkpoint(self.run) or 'none'} (lower --lr?)"
            )
        for cb in self.callbacks:
            cb.on_before_optimizer_step(self, self.step)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm or float("inf"))
        factor = cosine_factor(
            self.step, self.total_steps, math.ceil(self.config.warmup_ratio * self.total_steps)
        )
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        return {
            "step": self.step + 1,
            "loss": loss,
            "lr": self.config.lr * factor,
            "grad_norm": float(grad_norm),
            "target_tokens": n_total,
            "tokens_per_s": tokens / seconds,
            "seconds": seconds,
        }

    def _autocast(self):
        """Mixed precision when the model is in 16 bits (the fp32 trainable copies meet 16-bit weights)."""
        if self.dtype in (torch.bfloat16, torch.float16):
            return torch.autocast(self.device.type, dtype=self.dtype)
        return nullcontext()

    def _progress(self):
        if not self.config.progress:
            return nullcontext(None)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[tps]:,.0f} tok/s"
            ),
            TimeRemainingColumn(),
        )

    def _log(self, metrics: dict) -> None:
        with (self.run / METRICS_FILE).open("a") as fh:
            fh.write(json.dumps(metrics) + "\n")

    def _trim_metrics(self) -> None:
        """On resume, drop logged steps after the checkpoint (they are re-run)."""
        path = self.run / METRICS_FILE
        if path.is_file():
            keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= self.step]
            path.write_text("".join(line + "\n" for line in keep))


def train(config: TrainConfig, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Set up and run a training run; a set-up failure leaves no run directory behind."""
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run = Path(config.out)
    fresh = not run.exists()
    try:
        trainer = Trainer(config, callbacks)
    except BaseException:
        if fresh and run.exists():
            shutil.rmtree(run)
        raise
    return trainer.train()
