"""The probe registry and what every probe's runner returns.

A probe is a package `lnprobe/probes/<name>/` with `config.py` (its config dataclass, holding the shared
`ProbeInputs`), `stats.py` (the maths) and `run.py` (the runner, returning a `ProbeResult`), registered
once in its `__init__.py`: `PROBES.add(name, Probe(Config, "lnprobe.probes.<name>.run:run_<name>"))`.
The runner is named, not imported, so listing probes or building their command lines never imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lnprobe.registry import Registry

R = TypeVar("R", bound="ProbeResult")


@dataclass(frozen=True)
class Probe:
    config: type  # the probe's config dataclass
    runner: str  # "module:function", called with a config, returning a ProbeResult
    summary: str = ""

    def run(self, config) -> ProbeResult:
        module, _, name = self.runner.partition(":")
        return getattr(importlib.import_module(module), name)(config)


PROBES: Registry[Probe] = Registry("probe")


@dataclass
class ProbeResult:
    """Base of the runners' typed results: `to_json()` is what the probe writes (its `FILE` in OUT),
    `from_json` / `read(out)` read it back."""

    FILE = ""  # the JSON file the runner writes in its output directory

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls: type[R], record: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    @classmethod
    def read(cls: type[R], out: str | Path) -> R:
        return cls.from_json(json.loads((Path(out) / cls.FILE).read_text()))
