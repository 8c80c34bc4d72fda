"""Vision-language connectors: the native two-layer MLP and the LLaVA-1 single linear layer.

transformers' `LlavaMultiModalProjector` is always linear_1 → act → linear_2. The paper (like LLaVA-1) uses a
single linear layer, so lnprobe records `lnprobe_connector = "linear"` in the model config and swaps the
projector for `LinearConnector`, which keeps the native `linear_1` (same weight name, same shape). A
checkpoint saved this way stores `multi_modal_projector.linear_1.*` only; `lnprobe.models.load()` rebuilds
the single layer. (Plain `AutoModelForImageTextToText` would add a random `linear_2`: use lnprobe's loader.)
"""

from __future__ import annotations

import torch
from torch import nn

from lnprobe.models.config import CONNECTORS

CONFIG_KEY = "lnprobe_connector"


class LinearConnector(nn.Module):
    """LLaVA-1 connector: one linear map from vision features to the LLM's hidden size."""

    def __init__(self, linear_1: nn.Linear) -> None:
        super().__init__()
        self.linear_1 = linear_1

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:  # [b, tokens, d_vision] → d_model
        return self.linear_1(image_features)


def connector_kind(config) -> str:
    """'linear' for lnprobe's single layer, else 'mlp2x_<act>' for the native projector."""
    kind = getattr(config, CONFIG_KEY, None)
    if kind == "linear":
        return "linear"
    return f"mlp2x_{getattr(config, 'projector_hidden_act', 'gelu')}"


def set_connector_kind(config, kind: str) -> None:
    if kind not in CONNECTORS:
        raise ValueError(f"unknown connector {kind!r} (known: {', '.join(CONNECTORS)})")
    if kind == "linear":
        setattr(config, CONFIG_KEY, "linear")
    else:
        config.projector_hidden_act = "gelu"
        if hasattr(config, CONFIG_KEY):
            delattr(config, CONFIG_KEY)


def install_connector(model: nn.Module, connector_name: str) -> nn.Module:
    """Swap the native projector for `LinearConnector` when the config asks for it (no copy: the
    existing `linear_1` module is moved over). Returns the model."""
    if connector_kind(model.config) != "linear":
        return model
    projector = model.get_submodule(connector_name)
    if isinstance(projector, LinearConnector):
        return model
    parent_name, _, attr = connector_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, LinearConnector(projector.linear_1))
    return model
