"""Mean cosine similarity of matched rows (same token or example in both representations)."""

from __future__ import annotations

import torch

from lnprobe.errors import InputError
from lnprobe.probes.base import METRICS, Metric, pair


def cosine_similarity(x, y) -> float:
    """Mean over rows of cos(x_i, y_i); X and Y need the same width. Zero rows count as 0."""
    a, b = pair(x, y)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"cosine similarity needs equal widths, got {a.shape[1]} and {b.shape[1]}")
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).mean())


METRICS.add("cosine", Metric("cosine", cosine_similarity, "mean cosine of matched token/example vectors", 1))
