"""Atomic output directories: write into a temporary sibling, then rename into place."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lnprobe.errors import InputError


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False, flag: str = "overwrite") -> Iterator[Path]:
    """Yield a temporary directory that replaces `out` when the block succeeds and vanishes when it
    fails, so a crash never leaves a half-written output. Refuses an existing `out` unless `overwrite`
    (`flag` names the option in the error)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists (pass {flag} to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def json_safe(value):
    """`value` with every non-finite float (NaN, inf) replaced by None, so the JSON written is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n")
