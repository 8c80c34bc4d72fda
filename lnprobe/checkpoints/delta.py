"""lnprobe delta checkpoints: only the trainable tensors of a regime, plus a JSON naming the base.

Layout of a delta directory::

    lnprobe_delta.json   {"format": "lnprobe-delta", "version": 1, "base": "<load() spec>",
                          "base_fingerprint": "fp1:<sha256>", "regime": "ln-simp",
                          "regime_options": {...}, "tensors": "delta.safetensors", ...}
    delta.safetensors    parameter name → tensor (full values, not differences), names as in the model
                         after `apply_regime(base, regime, options)`

Loading re-applies the regime to the base, checks that the tensor names equal the regime's trainable set
exactly, and copies the tensors in (`lnprobe.checkpoints.load`). An `ln-simp` delta of a 7B model is ~1 MB.

The base fingerprint (`fp1:`) is a sha256 over each safetensors file's name, size, header and sampled
chunks of its data (the whole file when it is under 64 MiB), so it is cheap at 7B yet changes when the
weights change (e.g. Vicuna vs LLaMA-2 with the same shapes).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lnprobe.errors import InputError
from lnprobe.io import Output, removed_weights
from lnprobe.textio import one_line, read_json

if TYPE_CHECKING:
    import torch

DELTA_FILE = "lnprobe_delta.json"
TENSORS_FILE = "delta.safetensors"
FORMAT = "lnprobe-delta"
VERSION = 1
_WHOLE_FILE_LIMIT = 64 * 2**20
_CHUNK = 2**20
_SAMPLES = 16


@dataclass(frozen=True)
class DeltaInfo:
    base: str
    base_fingerprint: str | None
    regime: str
    regime_options: dict = field(default_factory=dict)
    tensors: str = TENSORS_FILE
    format: str = FORMAT
    version: int = VERSION
    extra: dict = field(default_factory=dict)  # provenance, step, ... (free-form)


def fingerprint(checkpoint_dir: str | Path) -> str | None:
    """`fp1:<sha256>` of a checkpoint's safetensors files, or None when it has none."""
    files = sorted(Path(checkpoint_dir).glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as fh:
            if size <= _WHOLE_FILE_LIMIT:
                digest.update(fh.read())
                continue
            (header_len,) = struct.unpack("<Q", fh.read(8))
            digest.update(fh.read(header_len))
            start = 8 + header_len
            span = max(size - start - _CHUNK, 0)
            for i in range(_SAMPLES):
                fh.seek(start + span * i // (_SAMPLES - 1))
                digest.update(fh.read(_CHUNK))
    return "fp1:" + digest.hexdigest()


def is_delta(path: str | Path) -> bool:
    return (Path(path) / DELTA_FILE).is_file()


def read_delta(path: str | Path) -> DeltaInfo:
    """Read and validate DELTA_FILE; InputError names the file and the problem."""
    meta = Path(path) / DELTA_FILE
    data = read_json(meta, "delta description")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{meta}: not an lnprobe delta (format must be {FORMAT!r})")
    if data.get("version") != VERSION:
        raise InputError(
            f"{meta}: unsupported delta version {data.get('version')!r} (this lnprobe reads {VERSION})"
        )
    for key in ("base", "regime"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InputError(f"{meta}: missing or empty {key!r}")
    known = set(DeltaInfo.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{meta}: unknown field(s) {', '.join(unknown)}")
    info = DeltaInfo(**data)
    if not (Path(path) / info.tensors).is_file():
        raise InputError(
            removed_weights(path) or f"{Path(path) / info.tensors}: delta tensors file is missing"
        )
    return info


def save_delta(
    out_dir: str | Path,
    tensors: dict[str, torch.Tensor],
    info: DeltaInfo,
    overwrite: bool = False,
) -> Path:
    """Write a delta atomically: into a temporary sibling directory, then renamed into place."""
    from safetensors.torch import save_file

    with Output(Path(out_dir), "delta", force=overwrite).build() as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / info.tensors))
        (tmp / DELTA_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    return Path(out_dir)


def read_delta_tensors(path: str | Path, info: DeltaInfo) -> dict[str, torch.Tensor]:
    """The delta's tensors as stored (InputError naming the file when it is corrupt)."""
    from safetensors.torch import load_file

    file = Path(path) / info.tensors
    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise InputError(f"{file}: corrupt delta tensors ({one_line(exc)})") from None


def load_delta_tensors(path: str | Path, info: DeltaInfo, expected: set[str]) -> dict[str, torch.Tensor]:
    """The delta's tensors, checked to be exactly the `expected` parameter names."""
    file = Path(path) / info.tensors
    tensors = read_delta_tensors(path, info)
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise InputError(f"{file}: tensors do not match regime {info.regime!r} on the base ({detail})")
    return tensors
