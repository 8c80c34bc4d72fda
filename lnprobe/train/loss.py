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

from lnprobe.data.llava import IGNORE, reference_answer
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


def _answer_states(model: nn.Module, sites: ModelSites, batch: dict, mask: torch.Tensor):
    """(final hidden states at the positions whose next token is a label `[n, d]`, the head that maps them
    to logits); models without a separate body give their logits and an identity head."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    body_name = sites.vision_tower.rpartition(".")[0] if sites.vision_tower else ""
    if body_name and sites.lm_head is not None:
        hidden = model.get_submodule(body_name)(**inputs).last_hidden_state[:, :-1][mask]
        return hidden, model.get_submodule(sites.lm_head)
    return model(**inputs).logits[:, :-1][mask], nn.Identity()


def example_losses(model: nn.Module, sites: ModelSites, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean answer-token loss of each example `[b]`, its number of target tokens `[b]`). Examples do not
    interact in a forward pass, so the gradient of example e's loss from a batch equals the gradient from
    that example alone (up to padding's rounding)."""
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    states, head = _answer_states(model, sites, batch, mask)
    token = F.cross_entropy(head(states).float(), labels[mask], reduction="none")
    counts = mask.sum(1)
    sums = token.new_zeros(labels.shape[0]).index_add(0, mask.nonzero()[:, 0], token)
    return sums / counts.clamp_min(1), counts


@torch.no_grad()
def answer_scores(
    model: nn.Module, sites: ModelSites, batch: dict, stop: set[int], chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per example `[b]`: (sum of its answer-token losses, its number of target tokens, whether greedy
    decoding gives its first answer). The last is `answer_accuracy`'s rule (`reference_answer`: the first
    answer's tokens, end-of-turn tokens `stop` dropped; teacher-forced argmax at each). Logits exist only
    `chunk` rows at a time."""
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    states, head = _answer_states(model, sites, batch, mask)
    targets = labels[mask]
    token = torch.empty(targets.shape, dtype=torch.float32, device=targets.device)
    best = torch.empty_like(targets)
    for s in range(0, len(targets), chunk):
        logits = head(states[s : s + chunk]).float()
        token[s : s + chunk] = F.cross_entropy(logits, targets[s : s + chunk], reduction="none")
        best[s : s + chunk] = logits.argmax(-1)
    sums = token.new_zeros(labels.shape[0]).index_add(0, mask.nonzero()[:, 0], token)
    predicted = torch.full_like(labels, IGNORE)
    predicted[mask] = best
    hits = torch.zeros(labels.shape[0], dtype=torch.bool)
    for row, full in enumerate(batch["labels"].cpu()):
        if bool(mask[row].any()):
            start, answer = reference_answer(full, stop)
            if start == 0:  # a target at position 0 (plain text, no BOS) is never predicted: from the next
                start, answer = 1, answer[1:]
            hits[row] = predicted[row, start - 1 : start - 1 + len(answer)].tolist() == answer
    return sums, mask.sum(1), hits
