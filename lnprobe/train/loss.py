"""Causal-LM loss on the answer tokens only, without materialising the full logits.

LLaVA-style data labels only the assistant answers, a small share of each sequence (image tokens and prompts
are -100). So the loss takes the final hidden states at the positions whose next token is a label, and runs
the output head and cross-entropy over them in checkpointed chunks: at most `chunk` x vocab fp32 logits
exist at once, and none are kept for the backward pass. The sum equals transformers' own loss x the
number of target tokens (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lnprobe.data.llava import IGNORE
from lnprobe.models.sites import ModelSites


def _chunk_ce(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def loss_sum(model: nn.Module, sites: ModelSites, batch: dict, chunk: int = 4096) -> tuple[torch.Tensor, int]:
    """(sum of token losses, number of target tokens) for one batch."""
    labels = batch["labels"][:, 1:]  # [b, t-1]: the token each position predicts
    mask = labels != IGNORE
    n = int(mask.sum())
    body_name = sites.vision_tower.rpartition(".")[0] if sites.vision_tower else ""
    if not body_name or sites.lm_head is None:  # no separate body (e.g. transformers 4.x): use HF's loss
        return model(**batch).loss * n, n
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.get_submodule(body_name)(**inputs).last_hidden_state[:, :-1][mask]  # [n, d]
    head = model.get_submodule(sites.lm_head)
    targets = labels[mask]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, n, chunk):
        h, y = hidden[start : start + chunk], targets[start : start + chunk]
        total = total + (
            checkpoint(_chunk_ce, head, h, y, use_reentrant=False)
            if torch.is_grad_enabled()
            else _chunk_ce(head, h, y)
        )
    return total, n


def example_losses(model: nn.Module, sites: ModelSites, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean answer-token loss of each example `[b]`, its number of target tokens `[b]`). Examples do not
    interact in a forward pass, so the gradient of example e's loss from a batch equals the gradient from
    that example alone (up to padding's rounding)."""
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    body_name = sites.vision_tower.rpartition(".")[0] if sites.vision_tower else ""
    if body_name and sites.lm_head is not None:
        hidden = model.get_submodule(body_name)(**inputs).last_hidden_state[:, :-1][mask]
        logits = model.get_submodule(sites.lm_head)(hidden)
    else:
        logits = model(**inputs).logits[:, :-1][mask]
    token = F.cross_entropy(logits.float(), labels[mask], reduction="none")
    rows = mask.nonzero()[:, 0]
    counts = mask.sum(1)
    sums = token.new_zeros(labels.shape[0]).index_add(0, rows, token)
    return sums / counts.clamp_min(1), counts
