"""Dataset manifests (`data_manifests/*.yaml`) and `lnprobe data verify`.

A manifest names a dataset, where it comes from (a public page), its licence, its format and how lnprobe
reads it, and the files a local copy must hold: a path relative to the dataset root, the size in bytes and
the sha256 where they are known (null where no release publishes them; verify then checks presence only
and says so). A path ending in "/" is a folder (of images, say) that must exist and not be empty. Unknown
fields and malformed hashes are errors, so a typo cannot silently weaken a check.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.textio import read_yaml

FIELDS = {"name", "description", "source", "license", "format", "reader", "files", "notes"}
REQUIRED = {"name", "description", "source", "license", "format", "reader", "files"}
FILE_FIELDS = {"path", "size", "sha256", "note"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ROOT = Path(__file__).resolve().parents[2] / "data_manifests"


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int | None
    sha256: str | None
    note: str | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    source: str
    license: str
    format: str
    reader: str
    files: tuple[FileEntry, ...]
    notes: str | None = None


def manifest_path(spec: str | Path) -> Path:
    """A manifest file, or the name of one shipped in data_manifests/ (`pope` → data_manifests/pope.yaml)."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = ROOT / f"{spec}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in ROOT.glob("*.yaml"))) if ROOT.is_dir() else "none"
    raise InputError(f"{spec}: no such manifest file (shipped: {known})")


def read_manifest(spec: str | Path) -> Manifest:
    path = manifest_path(spec)
    data = read_yaml(path, "manifest")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise InputError(
            f"{path}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})"
        )
    missing = sorted(REQUIRED - set(data))
    if missing:
        raise InputError(f"{path}: missing field(s) {', '.join(missing)}")
    for key in REQUIRED - {"files"}:
        if not isinstance(data[key], str) or not data[key].strip():
            raise InputError(f"{path}: field {key!r} must be a non-empty string")
    if not isinstance(data["files"], list) or not data["files"]:
        raise InputError(f"{path}: 'files' must be a non-empty list")
    files = tuple(_file(path, i, item) for i, item in enumerate(data["files"]))
    return Manifest(**{**data, "files": files})


def _file(path: Path, index: int, item: object) -> FileEntry:
    where = f"{path}: files[{index}]"
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a mapping")
    unknown = sorted(set(item) - FILE_FIELDS)
    if unknown:
        raise InputError(
            f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FILE_FIELDS))})"
        )
    rel = item.get("path")
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise InputError(f"{where}: 'path' must be a relative path inside the dataset root")
    size, digest = item.get("size"), item.get("sha256")
    if rel.endswith("/") and (size is not None or digest is not None):
        raise InputError(f"{where}: a folder entry ({rel}) takes no size or sha256")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InputError(f"{where}: 'size' must be a byte count or null")
    if digest is not None and (not isinstance(digest, str) or not SHA256.match(digest)):
        raise InputError(f"{where}: 'sha256' must be 64 lowercase hex digits or null, got {digest!r}")
    return FileEntry(rel, size, digest, item.get("note"))


def sha256_of(path: Path, progress=None, task=None, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            if progress is not None:
                progress.advance(task, len(block))
    return digest.hexdigest()


def verify(manifest: Manifest, root: Path, progress: bool = True) -> list[dict]:
    """One row per file: status ok / missing / size mismatch / hash mismatch / present (unchecked)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    rows = []
    folders = [f for f in manifest.files if f.path.endswith("/")]
    for entry in folders:
        path = root / entry.path
        if not path.is_dir() or not any(path.iterdir()):
            rows.append({"path": entry.path, "status": "missing", "detail": f"{path} (a non-empty folder)"})
        else:
            rows.append({"path": entry.path, "status": "present", "detail": "folder, contents unchecked"})
    present = [(f, root / f.path) for f in manifest.files if (root / f.path).is_file()]
    total = sum(p.stat().st_size for f, p in present if f.sha256)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"hashing {manifest.name}", total=total)
        for entry in manifest.files:
            if entry.path.endswith("/"):
                continue
            path = root / entry.path
            if not path.is_file():
                rows.append({"path": entry.path, "status": "missing", "detail": str(path)})
                continue
            size = path.stat().st_size
            if entry.size is not None and size != entry.size:
                rows.append(
                    {"path": entry.path, "status": "size mismatch", "detail": f"{size} != {entry.size}"}
                )
                continue
            if entry.sha256 is not None:
                got = sha256_of(path, bar, task)
                status = "ok" if got == entry.sha256 else "hash mismatch"
                rows.append({"path": entry.path, "status": status, "detail": got})
                continue
            unchecked = "size and hash unknown" if entry.size is None else "hash unknown"
            rows.append({"path": entry.path, "status": "present", "detail": unchecked})
    order = {f.path: i for i, f in enumerate(manifest.files)}
    return sorted(rows, key=lambda r: order[r["path"]])
