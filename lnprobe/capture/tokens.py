"""Which rows of a captured `[batch, positions, d]` activation enter a probe.

Modes: `all` (every real token), `image` / `text` (image-token / other positions), `answer` (positions whose
label is not -100), `mean` (one mean-pooled row per example over its real tokens), `last` (each example's
last real token). Padding never counts. Rows come out in a fixed order (example, then position), so the
same inputs give aligned rows in every checkpoint.
"""

from __future__ import annotations

import torch

from lnprobe.errors import InputError

MODES = ("all", "image", "text", "answer", "mean", "last")
POOLED = ("mean", "last")  # one row per example


def position_mask(batch: dict, mode: str, image_token_id: int | None) -> torch.Tensor:
    """Boolean `[batch, positions]` of the positions that `mode` keeps (pooling modes keep all real ones)."""
    real = batch["attention_mask"].bool()
    if mode in ("all", "mean", "last"):
        return real
    if mode == "text" and image_token_id is None:  # a text-only model: every token is text
        return real
    if mode in ("image", "text"):
        if image_token_id is None:
            raise InputError(f"token selection {mode!r} needs a model with an image token")
        is_image = batch["input_ids"] == image_token_id
        return real & (is_image if mode == "image" else ~is_image)
    if mode == "answer":
        if "labels" not in batch:
            raise InputError("token selection 'answer' needs labelled data")
        return real & (batch["labels"] != -100)
    raise InputError(f"unknown token selection {mode!r} (known: {', '.join(MODES)})")


def select_rows(h: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """`[rows, d]` from `h` `[b, t, d]` and a position mask `[b, t]`."""
    if mode == "mean":
        counts = mask.sum(1, keepdim=True).clamp_min(1)
        return (h * mask.unsqueeze(-1)).sum(1) / counts
    if mode == "last":
        last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)  # index of each row's last kept position
        return h[torch.arange(h.shape[0]), last]
    return h[mask]


def image_rows(h: torch.Tensor, mode: str) -> torch.Tensor:
    """Rows of an image-side site (`[images, patches, d]`): every patch, or pooled per image."""
    if mode in ("all", "image"):
        return h.reshape(-1, h.shape[-1])
    if mode == "mean":
        return h.mean(1)
    if mode == "last":
        return h[:, -1]
    raise InputError(
        f"token selection {mode!r} does not apply to image-side sites (use all, image, mean, last)"
    )
