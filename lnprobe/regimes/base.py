"""What a training regime is: a named rule that picks the exact set of parameters to train.

Applying a regime freezes everything, then unfreezes its set in place: no module is copied (PEFT's
LNTuning deep-copies each norm; lnprobe does not). Only LoRA changes the model, by wrapping the LLM's
linear layers with PEFT adapters. The vision tower is always frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

from lnprobe.errors import InputError
from lnprobe.models.sites import ModelSites, resolve_sites
from lnprobe.registry import Registry


@dataclass(frozen=True)
class RegimeOptions:
    """Options a regime may read. LoRA: rank 32 as in the paper, alpha = 2 x rank unless given."""

    lora_rank: int = 32
    lora_alpha: int | None = None
    lora_dropout: float = 0.05

    def __post_init__(self) -> None:
        if self.lora_rank < 1:
            raise InputError(f"--lora-rank must be >= 1, got {self.lora_rank}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InputError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")

    @property
    def alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank


Select = Callable[[nn.Module, ModelSites, RegimeOptions], Iterable[str]]
Prepare = Callable[[nn.Module, ModelSites, RegimeOptions], nn.Module]


@dataclass(frozen=True)
class Regime:
    name: str
    summary: str
    select: Select  # → names of the modules (or parameters) whose parameters are trained
    prepare: Prepare | None = None  # optional model transform before selection (LoRA wrapping)


REGIMES: Registry[Regime] = Registry("regime")


def params_under(model: nn.Module, prefixes: Iterable[str]) -> list[str]:
    """Names of the parameters of `model` that live under any of the module/parameter names given."""
    prefixes = tuple(prefixes)
    return [
        name
        for name, _ in model.named_parameters()
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    ]


@dataclass
class Applied:
    """A model with a regime applied: the (possibly wrapped) model and its exact trainable set."""

    model: nn.Module
    regime: str
    options: RegimeOptions
    trainable: tuple[str, ...]
    sites: ModelSites


def apply_regime(model: nn.Module, name: str, options: RegimeOptions | None = None) -> Applied:
    """Freeze `model`, then make exactly the regime's parameters trainable. Returns the model to train
    (the same object unless the regime wraps it) and the names of its trainable parameters."""
    regime = REGIMES.get(name)
    options = options or RegimeOptions()
    sites = resolve_sites(model).require("vision_tower", "connector", "lm_head")
    model.requires_grad_(False)
    if regime.prepare is not None:
        model = regime.prepare(model, sites, options)
        sites = resolve_sites(model)
    selected = params_under(model, regime.select(model, sites, options))
    if not selected:
        raise InputError(f"regime {name!r} selects no parameters of {sites.model_type}")
    params = dict(model.named_parameters())
    for param_name in selected:
        params[param_name].requires_grad_(True)
    trainable = tuple(n for n, p in model.named_parameters() if p.requires_grad)
    leaked = [n for n in trainable if n.startswith(sites.vision_tower + ".")]
    if leaked:
        raise AssertionError(f"regime {name!r} would train the vision tower: {leaked[:3]}")
    return Applied(model=model, regime=name, options=options, trainable=trainable, sites=sites)
