"""Provenance recorded beside every output: git state, package versions, platform, time.

(Its standard-library helpers are imported when a record is made: `lnprobe.config` imports this module,
and the command line's start-up should not pay for them.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_PACKAGES = ("lnprobe", "torch", "transformers", "peft", "nnsight", "accelerate", "safetensors")


def _git(*args: str) -> str | None:
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def versions() -> dict[str, str | None]:
    import importlib.metadata as _md

    found: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            found[name] = _md.version(name)
        except _md.PackageNotFoundError:
            found[name] = None
    return found


def provenance(**extra: Any) -> dict[str, Any]:
    """A JSON-ready record of where a result came from; `extra` adds seeds, inputs, etc."""
    import datetime as _dt
    import platform

    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain") if sha else None
    return {
        "git_sha": sha,
        "git_dirty": bool(status) if status is not None else None,
        "versions": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
