"""Every image a command will read is decoded once, up front, so a broken file is named before training or
probing starts rather than minutes into a run. Images already decoded are remembered by (size, mtime) in
this process and in a small cache file (`$LNPROBE_CACHE_DIR`, default `~/.cache/lnprobe`), so re-runs over
the same data skip the work."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from lnprobe.errors import InputError
from lnprobe.progress import tracked
from lnprobe.textio import one_line

_SEEN: dict[str, tuple[int, int]] = {}  # absolute path -> (size, mtime_ns) of a decoded image
CACHE_NAME = "decoded_images.json"


def cache_file() -> Path:
    root = os.environ.get("LNPROBE_CACHE_DIR") or Path.home() / ".cache" / "lnprobe"
    return Path(root) / CACHE_NAME


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _load_cache() -> dict[str, tuple[int, int]]:
    try:
        data = json.loads(cache_file().read_text())
        return {k: (int(v[0]), int(v[1])) for k, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}  # no cache, or an unreadable one: decode again


def _save_cache(entries: dict[str, tuple[int, int]]) -> None:
    """Best effort: a cache that cannot be written only costs time on the next run."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".decoded_images.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump({k: list(v) for k, v in entries.items()}, fh)
        os.replace(tmp, path)
    except OSError:
        pass


def decode(path: Path) -> Image.Image:
    """The image at `path` as RGB, fully decoded; InputError naming the file if it is not one."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: unreadable image ({one_line(exc)})") from None


def check_images(items: Iterable[tuple[Path, str]], progress: bool = False) -> None:
    """Decode each (path, where) once; InputError '<path>: unreadable image (...) [where]' for the first
    broken one. `where` names the record that uses it."""
    todo = []
    for path, where in items:
        key = str(path.resolve())
        try:
            stamp = _stamp(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read image ({exc.strerror}; {where})") from None
        if _SEEN.get(key) != stamp:
            todo.append((path, where, key, stamp))
    if not todo:
        return
    cache = _load_cache()
    for t in [t for t in todo if cache.get(t[2]) == t[3]]:  # decoded by an earlier run
        _SEEN[t[2]] = t[3]
        todo.remove(t)
    if todo:
        todo = tracked(todo, progress, "checking images", transient=True)
    added = 0
    for path, where, key, stamp in todo:
        try:
            decode(path)
        except InputError as exc:
            raise InputError(f"{exc} ({where})") from None
        _SEEN[key] = cache[key] = stamp
        added += 1
    if added:
        _save_cache(cache)
