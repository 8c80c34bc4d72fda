"""Checkpoint directory formats that layers above `models` teach `load` (torch-free).

`models.load` reads HF checkpoints, hub ids and PEFT adapters itself. A format that needs more than the
models layer knows (an lnprobe delta re-applies a training regime, which sits above models) registers a
`CheckpointFormat` here under its name: the file that marks such a directory, how to read the base model
it names, and the loader. `checkpoint_kind` then reports the name, and `load`, `base_of` and
`resolve_config` dispatch to the entry, so `models` never imports the layers above it. `lnprobe.checkpoints`
registers the delta format when imported, and the package `lnprobe` imports it, so every format is known
whatever the caller imported first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lnprobe.registry import Registry


@dataclass(frozen=True)
class CheckpointFormat:
    marker: str  # the file whose presence marks a directory of this format
    base: Callable[[Path], str]  # the base model spec the checkpoint names (InputError when unreadable)
    # (spec, base_spec, dtype, device, merge, online, trust_remote_code) -> models.load.Loaded
    load: Callable[..., Any]

    def marks(self, path: Path) -> bool:
        return (path / self.marker).is_file()


FORMATS: Registry[CheckpointFormat] = Registry("checkpoint format")
