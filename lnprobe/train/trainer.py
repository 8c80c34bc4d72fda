"""The training loop behind `lnprobe train`.

Paper defaults: AdamW (weight decay 0), cosine schedule with 3 % warmup, gradient checkpointing
(non-reentrant), bf16 + TF32 on CUDA, fp32 on CPU, trainable parameters kept in fp32 when the model is bf16,
separate learning rates for norms / connector / embeddings+head. The loss of an optimizer step is the sum of
its answer-token losses divided by their number across all micro-batches and processes, so k micro-batches
(or k processes) equal one k-times larger batch. Resuming from a checkpoint reproduces the uninterrupted
run bit for bit on CPU. Started by `torchrun` / `accelerate launch`, it runs data-parallel.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from lnprobe.config import save_config
from lnprobe.data.llava import LengthGroupedBatches, LlavaDataset, collate, read_records
from lnprobe.data.templates import TEMPLATES
from lnprobe.errors import InputError
from lnprobe.models.tiny import TinyConfig, save_tiny
from lnprobe.regimes import RegimeOptions, resolve_regime
from lnprobe.train import memory, shard_state
from lnprobe.train import state as ckpt_io
from lnprobe.train.build import build_model, model_dtype
from lnprobe.train.callbacks import Callback
from lnprobe.train.config import TrainConfig
from lnprobe.train.logs import append_metrics, progress_bar, tensorboard_writer, trim_metrics
from lnprobe.train.loss import answer_scores, loss_sum
from lnprobe.train.rundir import RunClaim, check_run_dir
from lnprobe.train.setup import make_accelerator, param_groups

METRICS_FILE, RESULT_FILE = ckpt_io.METRICS_FILE, ckpt_io.RESULT_FILE


class TrainingDiverged(InputError):
    """The loss became NaN/inf; the last good checkpoint is left intact."""


@dataclass
class TrainResult:
    run: Path
    checkpoint: Path
    steps: int
    final_loss: float
    eval_loss: float | None = None
    best_eval_loss: float | None = None
    eval_accuracy: float | None = None


def cosine_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class LossModule(nn.Module):
    """The model and its answer-token loss as one module, so DDP / DeepSpeed wrap the whole forward."""

    def __init__(self, model: nn.Module, sites, chunk: int) -> None:
        super().__init__()
        self.model, self.sites, self.chunk = model, sites, chunk

    def forward(self, batch: dict) -> torch.Tensor:
        return loss_sum(self.model, self.sites, batch, self.chunk)[0]


class Trainer:
    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> None:
        config = config.resolved()
        self.config, self.callbacks, self.run = config, list(callbacks), Path(config.out)
        resolve_regime(config.regime), TEMPLATES.get(config.template)  # fail fast on unknown names
        self.resume_from = check_run_dir(config)
        for path in filter(None, (config.data, config.eval_data)):
            read_records(path)  # fail on bad data before anything is loaded or written
        self.accelerator = make_accelerator(config)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.device = self.accelerator.device
        self.dtype = model_dtype(config, self.device)
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.claim = RunClaim(self.run, self.resume_from is not None, self.accelerator)
        self.setup_dir = self.claim.dir
        try:
            self._set_up()
        except BaseException:
            self.release()
            raise

    def _set_up(self) -> None:
        config = self.config
        self.base_spec = self._base_spec()
        self.regime_options = RegimeOptions(config.lora_rank, config.lora_alpha, config.lora_dropout)
        self._setup_model()
        self.dataset = self._dataset(config.data)
        self.eval_dataset = self._dataset(config.eval_data) if config.eval_data else None
        self.batches = LengthGroupedBatches(self.dataset.lengths, config.batch_size, config.seed)
        if config.grad_ckpt == "auto":
            self.memory_plan = memory.auto_checkpointing(self)
        self.steps_per_epoch = len(self.batches) // (config.grad_accum * self.world)
        if self.steps_per_epoch == 0:
            raise InputError(
                f"{config.data}: {len(self.dataset)} records are fewer than one optimizer step "
                f"(batch {config.batch_size} x accumulation {config.grad_accum} x {self.world} processes)"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        groups, self.param_names = param_groups(config, self.model, self.sites, self.trainable)
        fused = self.device.type == "cuda"  # one kernel for all trainable tensors
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=fused)
        self.loss_module, self.optimizer = self.accelerator.prepare(
            LossModule(self.model, self.sites, config.loss_chunk), optimizer
        )
        self.checkpoints = shard_state if config.shard == "fsdp" else ckpt_io  # sharded or whole
        self.step = self.checkpoints.restore(self.resume_from, self) if self.resume_from else 0
        self.best_eval: float | None = None
        self._epoch_cache: tuple[int, list] = (-1, [])
        if self.claim.fresh is not None:  # set-up passed: the run directory appears now, complete
            save_config(config, self.setup_dir, seed=config.seed, base=self.base_spec, processes=self.world)
        if self.accelerator.is_main_process and getattr(self, "memory_plan", None):
            self.memory_plan.save(self.setup_dir)  # a resumed run re-plans (the budget may have changed)
        if self.claim.fresh is not None:
            self.claim.fresh.publish()
        self.accelerator.wait_for_everyone()

    def release(self) -> None:
        """Give up the run directory: unlock it, and remove an unpublished set-up (with --shard fsdp in one
        process, also end its process group)."""
        self.claim.release()
        if getattr(self.accelerator, "sharded", False):
            self.accelerator.release()

    def _base_spec(self) -> str:
        """The base model's spec as checkpoints record it; `base_source` is where set-up reads it from
        (a fresh run's tiny base is written into the staging directory, which becomes the run)."""
        if self.config.model != "tiny":
            path = Path(self.config.model)
            self.base_source = str(path.resolve()) if path.exists() else self.config.model
            return self.base_source
        staged = self.setup_dir / "base"
        if self.accelerator.is_main_process and not staged.is_dir():
            save_tiny(staged, TinyConfig(seed=self.config.seed))
        self.accelerator.wait_for_everyone()
        self.base_source = str(staged.resolve())
        return str((self.run / "base").resolve())

    def _setup_model(self) -> None:
        resume = self.resume_from if self.config.shard == "none" else None  # sharded: restored later
        full_resume = resume is not None and resolve_regime(self.config.regime).whole_model
        source = str(resume) if full_resume else self.base_source
        delta = resume if resume is not None and not full_resume else None
        if self.config.shard == "fsdp":  # with more than one process only the main one loads weights
            build = self.accelerator.build_model
            loaded, applied = build(self.config, source, self.regime_options, self.dtype)
        else:
            loaded, applied = build_model(
                self.config, source, self.regime_options, self.dtype, self.device, delta
            )
        self.processor, self.model, self.sites = loaded.processor, applied.model, applied.sites
        self.trainable = applied.trainable

    def _dataset(self, path: str) -> LlavaDataset:
        c = self.config
        return LlavaDataset(
            path, self.processor, c.template, c.max_length, c.image_folder, c.skip_missing, c.progress
        )

    # -- data -----------------------------------------------------------------------------------------
    def _collate(self, dataset: LlavaDataset, indices: list[int]) -> dict:
        return self._to_device(self._collate_fn(dataset)([dataset[i] for i in indices]))

    def _collate_fn(self, dataset: LlavaDataset):
        enc = dataset.encoder
        return functools.partial(
            collate,
            pad_id=self.processor.tokenizer.pad_token_id,
            image_token_id=enc.image_token_id,
            n_image_tokens=enc.n_image_tokens,
        )

    def _to_device(self, batch: dict) -> dict:
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def step_indices(self, step: int) -> list[list[int]]:
        """Record indices of this process's micro-batches of optimizer step `step`."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, self.batches.epoch(epoch))
        per_step = self.config.grad_accum * self.world
        return self._epoch_cache[1][k * per_step : (k + 1) * per_step][self.rank :: self.world]

    def micro_batches(self, start: int):
        """Collated micro-batches from optimizer step `start` on, in order (`--num-workers` processes load
        and collate ahead; 0 loads in this process)."""
        for epoch_start in range(
            start - start % self.steps_per_epoch, self.total_steps, self.steps_per_epoch
        ):
            steps = range(max(start, epoch_start), min(epoch_start + self.steps_per_epoch, self.total_steps))
            lists = [idx for step in steps for idx in self.step_indices(step)]
            loader = torch.utils.data.DataLoader(
                self.dataset,
                batch_sampler=lists,
                collate_fn=self._collate_fn(self.dataset),
                num_workers=self.config.num_workers,
                pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(self.config.seed + epoch_start),  # not the global RNG
            )
            for batch in loader:
                yield self._to_device(batch)

    # -- the loop -------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        if self.step >= self.total_steps:  # resuming a finished run: nothing to train
            return TrainResult(**ckpt_io.finished_result(self.run, self.step, self.resume_from))
        cfg, main = self.config, self.accelerator.is_main_process
        self.tensorboard = tensorboard_writer(self.run / "tensorboard", self.step) if main else None
        if main:
            trim_metrics(self.run / METRICS_FILE, self.step)
            (self.run / RESULT_FILE).unlink(missing_ok=True)  # present only once this run has finished
        for cb in self.callbacks:
            cb.on_train_begin(self)
        if self.resume_from is None and self.eval_dataset is not None:  # the starting point, as step 0
            before = self._evaluate(track_best=False)
            if main:
                append_metrics(self.run / METRICS_FILE, self.tensorboard, {"step": 0, **before})
        last, metrics = self.resume_from, {"loss": float("nan")}
        # closing(): an unfinished epoch's data-loader workers are shut down even on errors
        show = self.config.progress and self.accelerator.is_main_process
        with (
            progress_bar(show) as progress,
            contextlib.closing(self.micro_batches(self.step)) as self._stream,
        ):
            task = (
                progress.add_task(
                    "train", total=self.total_steps, completed=self.step, loss=float("nan"), lr=0.0, tps=0.0
                )
                if progress
                else None
            )
            while self.step < self.total_steps:
                metrics = self._one_step()
                self.step += 1
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == self.total_steps:
                    metrics.update(self._evaluate())
                if main and (self.step % cfg.log_every == 0 or self.step == self.total_steps):
                    append_metrics(self.run / METRICS_FILE, self.tensorboard, metrics)
                if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == self.total_steps:
                    last = self.checkpoints.save_checkpoint(self.run, self.step, self)
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step, metrics)
                if progress:
                    progress.update(
                        task, advance=1, loss=metrics["loss"], lr=metrics["lr"], tps=metrics["tokens_per_s"]
                    )
        for cb in self.callbacks:
            cb.on_train_end(self)
        result = TrainResult(
            self.run,
            last,
            self.step,
            metrics["loss"],
            metrics.get("eval_loss"),
            self.best_eval,
            metrics.get("eval_accuracy"),
        )
        if main:
            record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
            (self.run / RESULT_FILE).write_text(json.dumps(record, indent=2) + "\n")
        return result

    def _sum(self, value: float) -> float:
        """Sum a number over processes."""
        if self.world == 1:
            return value
        return float(
            self.accelerator.reduce(torch.tensor(value, dtype=torch.float64, device=self.device), "sum")
        )

    def _one_step(self) -> dict:
        start = time.perf_counter()
        batches = [next(self._stream) for _ in range(self.config.grad_accum)]
        n_total = self._sum(sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches))
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        micro_grads = any(cb.micro_grads_at(self.step) for cb in self.callbacks)
        accumulated: list = [None] * len(params)
        total = 0.0
        for m, batch in enumerate(batches):
            sync = m == len(batches) - 1
            with nullcontext() if sync else self.accelerator.no_sync(self.loss_module), self._autocast():
                s = self.loss_module(batch)
                # DDP averages gradients over processes: scale so the result is sum / global tokens
                self.accelerator.backward(s * (self.world / n_total))
            total += s.item()
            if micro_grads:
                self._hand_micro_grads(params, accumulated, m, batch)
        if micro_grads:
            for p, g in zip(params, accumulated, strict=True):
                p.grad = g
        loss = self._sum(total) / n_total
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss} at step {self.step + 1}; {self.run} keeps what was written, its "
                f"last good checkpoint is {ckpt_io.latest_checkpoint(self.run) or 'none'} (lower --lr?)"
            )
        for cb in self.callbacks:
            cb.on_before_optimizer_step(self, self.step)
        grad_norm = self.accelerator.clip_grad_norm_(params, self.config.max_grad_norm or float("inf"))
        factor = cosine_factor(
            self.step, self.total_steps, math.ceil(self.config.warmup_ratio * self.total_steps)
        )
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start
        tokens = self._sum(sum(int(b["attention_mask"].sum()) for b in batches))
        return {
            "step": self.step + 1,
            "loss": loss,
            "lr": self.config.lr * factor,
            "grad_norm": float(grad_norm),
            "target_tokens": int(n_total),
            "tokens_per_s": tokens / seconds,
            "seconds": seconds,
        }

    def _hand_micro_grads(self, params: list, accumulated: list, micro: int, batch: dict) -> None:
        """Show callbacks this micro-batch's own gradients, then set them aside for the step's sum."""
        for cb in self.callbacks:
            cb.on_micro_batch(self, self.step, micro, batch)
        for i, p in enumerate(params):
            if p.grad is not None:
                accumulated[i] = p.grad if accumulated[i] is None else accumulated[i] + p.grad
                p.grad = None

    @torch.no_grad()
    def _evaluate(self, track_best: bool = True) -> dict:
        """Mean answer-token loss over the held-out data (sharded over processes) and answer accuracy: the
        share of records whose first answer greedy decoding gives (`answer_scores`)."""
        if self.eval_dataset is None:
            return {}
        self.model.eval()
        order = list(range(len(self.eval_dataset)))
        chunks = [order[i : i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
        tok = self.processor.tokenizer
        stop = {tok.eos_token_id, tok.pad_token_id} - {None}
        total = count = correct = 0.0
        for idx in chunks[self.rank :: self.world]:
            with self._autocast():
                sums, counts, hits = answer_scores(
                    self.model,
                    self.sites,
                    self._collate(self.eval_dataset, idx),
                    stop,
                    self.config.loss_chunk,
                )
            total, count, correct = (
                total + float(sums.sum()),
                count + int(counts.sum()),
                correct + int(hits.sum()),
            )
        self.model.train()
        value = self._sum(total) / self._sum(count)
        if track_best:  # the best held-out loss of a trained checkpoint (not of the starting point)
            self.best_eval = value if self.best_eval is None else min(self.best_eval, value)
        return {"eval_loss": value, "eval_accuracy": self._sum(correct) / len(self.eval_dataset)}

    def _autocast(self):
        """Mixed precision when the model is in 16 bits (the fp32 trainable copies meet 16-bit weights)."""
        if self.dtype in (torch.bfloat16, torch.float16):
            return torch.autocast(self.device.type, dtype=self.dtype)
        return nullcontext()


def train(config: TrainConfig, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Set up and run a training run; a set-up failure leaves no run directory behind."""
    if torch.cuda.is_available() and config.device in ("auto", "cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if config.gradvar_every:
        from lnprobe.train.gradvar_callback import GradVarCallback

        callbacks = [*callbacks, GradVarCallback(config.gradvar_every)]
    trainer = Trainer(config, callbacks)  # a failed set-up leaves nothing behind
    try:
        return trainer.train()
    finally:
        trainer.release()
