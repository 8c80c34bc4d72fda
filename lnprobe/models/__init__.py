"""Model loading, site resolution, tiny models, presets and delta checkpoints."""

from lnprobe.models.load import Loaded, build_from_config, checkpoint_kind, load, resolve_config
from lnprobe.models.sites import ModelSites, is_norm, resolve_sites
from lnprobe.models.tiny import TinyConfig, build_tiny, save_tiny

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
