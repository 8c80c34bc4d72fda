"""What a training regime is: a set of atoms, each a rule that picks the exact parameters it trains.

An *atom* (`norms`, `connector`, `embed`, `head`, `lora`, `attn-qv`, `attn-mlp`, `full`) is defined by the
exact set of parameters it trains. A regime is written as atoms joined by `+` (`lora+connector+embed+head`)
or by a preset's name (`ln` = `norms+connector+embed+head`); it trains the union of its atoms' sets. A
preset's name is looked up first, so `lora` is the preset `lora+connector`; inside a `+` composition every
part is an atom (presets do not combine). One module per atom / preset registers it in `ATOMS` /
`REGIMES` (presets, in the paper's table order).

Applying a regime freezes everything, then unfreezes its set in place: no module is copied (PEFT's
LNTuning deep-copies each norm; lnprobe does not). Only the `lora` atom changes the model, by wrapping the
LLM's linear layers with PEFT adapters (before any atom selects). The vision tower is always frozen.

The registries import without torch (models are only touched when a regime is applied), so `lnprobe
regimes` and the command line's `--help` stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lnprobe.errors import InputError
from lnprobe.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from lnprobe.models.sites import ModelSites

SEP = "+"


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


Select = Callable[["nn.Module", "ModelSites", RegimeOptions], Iterable[str]]
Prepare = Callable[["nn.Module", "ModelSites", RegimeOptions], "nn.Module"]


@dataclass(frozen=True)
class Atom:
    name: str
    summary: str
    select: Select  # → names of the modules (or parameters) whose parameters are trained
    prepare: Prepare | None = None  # optional model transform before selection (LoRA wrapping)
    whole_modules: bool = False  # selects whole non-wrapped modules: exportable as PEFT LN-tuning targets
    alone: bool = False  # combines with no other atom (`full` already trains everything the others do)


@dataclass(frozen=True)
class Preset:
    name: str
    atoms: tuple[str, ...]
    summary: str


ATOMS: Registry[Atom] = Registry("regime atom")
REGIMES: Registry[Preset] = Registry("regime")
# parsers of atoms written with parameters (`norms:input@0-7`): part -> Atom, or None when not theirs
PARAMETRIC: list[Callable[[str], Atom | None]] = []


def register_parametric(parse: Callable[[str], Atom | None]) -> None:
    PARAMETRIC.append(parse)


def _atom(part: str) -> Atom | None:
    if part in ATOMS:
        return ATOMS.get(part)
    return next((atom for parse in PARAMETRIC if (atom := parse(part)) is not None), None)


@dataclass(frozen=True)
class Regime:
    """A resolved regime: its name as written and its atoms."""

    name: str
    atoms: tuple[Atom, ...]
    description: str | None = None  # a preset's own summary

    @property
    def atom_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.atoms)

    @property
    def summary(self) -> str:
        return self.description or " + ".join(a.summary for a in self.atoms)

    @property
    def wraps(self) -> bool:
        """Whether applying it changes the module structure (LoRA adapters)."""
        return any(a.prepare is not None for a in self.atoms)

    @property
    def whole_model(self) -> bool:
        """Whether it trains the whole LLM (checkpoints are then full models, not deltas)."""
        return self.atom_names == ("full",)

    @property
    def peft_ln_tuning(self) -> bool:
        """Whether a delta of it has a PEFT LN-tuning form (every atom selects whole, unwrapped modules)."""
        return all(a.whole_modules for a in self.atoms)

    def prepare(self, model: nn.Module, sites: ModelSites, options: RegimeOptions) -> nn.Module:
        from lnprobe.models.sites import resolve_sites

        for atom in self.atoms:
            if atom.prepare is not None:
                model = atom.prepare(model, sites, options)
                sites = resolve_sites(model)
        return model

    def select(self, model: nn.Module, sites: ModelSites, options: RegimeOptions) -> list[str]:
        """The union of the atoms' selections, each name once (norm subsets may overlap)."""
        return list(dict.fromkeys(name for atom in self.atoms for name in atom.select(model, sites, options)))


def resolve_regime(name: str) -> Regime:
    """A preset's name, an atom's name, or atoms joined by '+'. InputError names the offending atom for
    an unknown, empty or duplicate atom."""
    if name in REGIMES:
        preset = REGIMES.get(name)
        return Regime(name, tuple(ATOMS.get(a) for a in preset.atoms), preset.summary)
    parts = name.split(SEP)
    known = f"presets: {', '.join(REGIMES.names())}; atoms, joined by '+': {', '.join(ATOMS.names())}"
    if not name.strip():
        raise InputError(f"empty regime name {name!r} ({known})")
    known += " (and norm subsets: norms:input, norms:post, norms:final, norms@0-7, ...)"
    if len(parts) == 1 and _atom(name) is None:
        raise InputError(f"unknown regime {name!r} ({known})")
    atoms: list[Atom] = []
    for i, part in enumerate(parts):
        if not part.strip():
            raise InputError(f"regime {name!r}: empty atom at position {i + 1} ({known})")
        atom = _atom(part)
        if atom is None:
            hint = " (a preset: presets do not combine, write its atoms)" if part in REGIMES else ""
            raise InputError(f"regime {name!r}: unknown atom {part!r}{hint} ({known})")
        if any(a.name == part for a in atoms):
            raise InputError(f"regime {name!r}: duplicate atom {part!r}")
        atoms.append(atom)
    alone = next((a for a in atoms if a.alone), None)
    if alone is not None and len(atoms) > 1:
        raise InputError(
            f"regime {name!r}: atom {alone.name!r} combines with no other atom ({alone.summary})"
        )
    return Regime(name, tuple(atoms))


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
    from lnprobe.models.sites import resolve_sites

    regime = resolve_regime(name)
    options = options or RegimeOptions()
    sites = resolve_sites(model).require("vision_tower", "connector", "lm_head")
    model.requires_grad_(False)
    if regime.wraps:
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
