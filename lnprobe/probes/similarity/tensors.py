"""Input handling shared by the similarity maths: float64 `[n, d]` matrices, matched pairs, centring.

A metric takes two `[n, d]` matrices of matched rows (the same n examples or tokens; d may differ) as torch
tensors or numpy arrays and returns a float. Everything is computed in float64 after centring.
"""

from __future__ import annotations

import numpy as np
import torch

from lnprobe.errors import InputError


def as_float64(x: torch.Tensor | np.ndarray, name: str = "X") -> torch.Tensor:
    """A float64 `[n, d]` tensor (on the input's device); InputError on wrong shapes or non-finite values."""
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise InputError(f"{name}: expected an [n, d] matrix, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise InputError(f"{name}: contains NaN or inf")
    return t


def pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = as_float64(x, "X"), as_float64(y, "Y")
    if a.shape[0] != b.shape[0]:
        raise InputError(f"X and Y must have the same rows (examples), got {a.shape[0]} and {b.shape[0]}")
    return a, b.to(a.device)


def center(x: torch.Tensor) -> torch.Tensor:
    """Subtract the column means (centring features makes Gram matrices centred)."""
    return x - x.mean(dim=0, keepdim=True)


def rbf_gram(x: torch.Tensor, sigma: float | None) -> torch.Tensor:
    """The Gaussian-kernel Gram matrix of the rows of `x`; `sigma` None: the median heuristic (sqrt of the
    median squared distance between distinct rows)."""
    sq = torch.cdist(x, x).square()
    if sigma is None:
        off = sq[~torch.eye(sq.shape[0], dtype=torch.bool, device=sq.device)]
        sigma = float(torch.sqrt(off.median())) if off.numel() else 1.0
    if sigma <= 0:
        raise InputError("rbf_cka: sigma must be > 0 (are all examples identical?)")
    return torch.exp(-sq / (2 * sigma**2))
