"""The small training loop both pre-training stages share: AdamW, linear warm-up then cosine decay, gradient
clipping, seeded batches, a progress bar, the loss curve returned."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from lnprobe.train.trainer import TrainingDiverged


def fit(
    params: Iterable[nn.Parameter],
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    label: str,
    progress: bool = True,
) -> list[float]:
    """Minimise `loss_of(indices)` over random batches of range(n); returns the loss per step."""
    from rich.progress import Progress

    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, warmup, steps))
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(label, total=steps)
        for step in range(steps):
            if len(order) < batch_size:
                order += torch.randperm(n, generator=gen).tolist()
            batch, order = torch.tensor(order[:batch_size]), order[batch_size:]
            loss = loss_of(batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"{label}: loss {loss.item()} at step {step} (try a lower learning rate)"
                )
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update(task, advance=1, description=f"{label} loss {loss.item():.3f}")
    return losses


def _schedule(step: int, warmup: int, steps: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def save(output, cfg, model, extra, losses: list[float]) -> None:
    """Model (safetensors), its tokenizer or image processor, the config and the loss curve, atomically."""
    import json

    from lnprobe.config import save_config
    from lnprobe.models.hf import quiet_transformers, save_quietly

    with output.build() as tmp, quiet_transformers():
        save_quietly(model, tmp)
        extra.save_pretrained(tmp)
        save_config(cfg, tmp, seed=cfg.seed)
        (tmp / "losses.json").write_text(json.dumps({"loss": losses}) + "\n")
