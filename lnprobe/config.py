"""Typed configs: frozen dataclasses that round-trip through JSON and are saved beside outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from lnprobe.errors import InputError
from lnprobe.provenance import provenance

C = TypeVar("C")

CONFIG_FILE = "lnprobe_config.json"


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Build `cls` from a dict, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**data)


def save_config(config: Any, out_dir: str | Path, **extra: Any) -> Path:
    """Write `config` with provenance to OUT_DIR/lnprobe_config.json; returns the path."""
    path = Path(out_dir) / CONFIG_FILE
    record = {
        "config_type": type(config).__name__,
        "config": to_dict(config),
        "provenance": provenance(**extra),
    }
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path
