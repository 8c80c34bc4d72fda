"""Model loading (HF checkpoints, hub ids, PEFT adapters, and the formats of higher layers registered in
`formats`: lnprobe deltas, from `lnprobe.checkpoints`), site resolution, tiny models and presets.

The names below are imported on first use (PEP 562): importing a torch-free submodule (or the command
line) does not load torch or transformers."""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from lnprobe.lazy import lazy_exports

_EXPORTS = {
    "Loaded": "load",
    "build_from_config": "load",
    "checkpoint_kind": "load",
    "load": "load",
    "resolve_config": "load",
    "ModelSites": "sites",
    "is_norm": "sites",
    "resolve_sites": "sites",
    "TinyConfig": "config",
    "build_tiny": "tiny",
    "save_tiny": "tiny",
}
__all__ = [
    "Loaded",
    "ModelSites",
    "TinyConfig",
    "build_from_config",
    "build_tiny",
    "checkpoint_kind",
    "is_norm",
    "load",
    "resolve_config",
    "resolve_sites",
    "save_tiny",
]

if TYPE_CHECKING:
    from lnprobe.models.config import TinyConfig
    from lnprobe.models.load import Loaded, build_from_config, checkpoint_kind, load, resolve_config
    from lnprobe.models.sites import ModelSites, is_norm, resolve_sites
    from lnprobe.models.tiny import build_tiny, save_tiny


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """`lnprobe.models.load` stays the function `load` (as when this package imported it eagerly) after the
    submodule of the same name is first imported: the import system then binds the submodule here."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "load" and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.load":
            value = value.load
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
