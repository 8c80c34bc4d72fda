"""The one output policy, and atomic output directories.

Every command that writes goes through `Output`: an existing output is never deleted or overwritten unless
`--force`; `--force` replaces only what lnprobe itself wrote for the same command (a marker file inside it);
an output that is, contains or (when it would be replaced) lies inside an input of the command is refused;
new outputs are built in a temporary sibling and moved into place, so a failure leaves nothing behind
(parent directories the command created are removed again).

A command's outputs form one results tree: the outermost folder lnprobe writes for it (a probe's --out run
alone, the claims' --out, the demo's or the study's --out; `results_tree`). The paths its JSON files record
are relative to the file's own folder when they point inside the tree, absolute otherwise (`saved_path`;
read back with `read_path`), so a tree can be moved or copied and still be read."""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lnprobe.errors import InputError

MARKER = ".lnprobe_output.json"  # {"command": ...}: lnprobe wrote this directory for that command
WEIGHTS_REMOVED = "weights_removed.json"  # in a checkpoint whose weight files lnprobe deleted: who, why


def marker_command(path: Path) -> str | None:
    """The command recorded in `path`'s marker (a directory's marker file, a file's `.meta.json`)."""
    marker = path / MARKER if path.is_dir() else path.with_suffix(".meta.json")
    try:
        return json.loads(marker.read_text()).get("command")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return None


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _input_paths(inputs: Iterable[str | Path | None]) -> list[Path]:
    """The inputs that are local paths (presets and hub ids are not), resolved."""
    return [_resolved(p) for p in inputs if p and Path(p).expanduser().exists()]


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclass(frozen=True)
class Output:
    """Where a command writes. `check()` applies the policy and touches nothing; `build()` yields a
    temporary directory that becomes `path` when the block succeeds."""

    path: Path
    command: str
    force: bool = False
    inputs: tuple[str, ...] = ()
    flag: str = "--out"
    is_file: bool = False  # a single file (its marker is FILE.meta.json, written by the command)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "inputs", tuple(str(p) for p in self.inputs if p))

    def _where(self) -> str:
        return f"{self.flag} {self.path}"

    def check(self) -> None:
        """InputError (one line naming the path) unless writing here is allowed."""
        out = _resolved(self.path)
        for inp in _input_paths(self.inputs):
            if out == inp:
                raise InputError(f"{self._where()}: is an input of this command; choose another output")
            if out in inp.parents:
                raise InputError(f"{self._where()}: contains the input {inp}; choose another output")
        self._check_location(out)
        if self.path.is_symlink() or self.path.exists():
            self._check_replaceable(out)

    def _check_location(self, out: Path) -> None:
        anchor = _first_existing(out.parent)
        if not anchor.is_dir():
            raise InputError(f"{self._where()}: {anchor} is not a directory")
        try:  # the only sure test of writability (root ignores permission bits; /proc refuses anyway)
            os.rmdir(tempfile.mkdtemp(prefix=".lnprobe-probe.", dir=anchor))
        except OSError as exc:
            raise InputError(f"{self._where()}: cannot write under {anchor} ({exc.strerror})") from None

    def _check_replaceable(self, out: Path) -> None:
        if self.path.is_symlink():
            raise InputError(f"{self._where()}: is a symbolic link; name the real path")
        if not self.force:
            raise InputError(f"{self._where()}: already exists (pass --force to replace it)")
        if self.is_file != self.path.is_file() or marker_command(self.path) != self.command:
            raise InputError(
                f"{self._where()}: was not written by `lnprobe {self.command}`; --force replaces only "
                "such outputs (remove it yourself or choose another output)"
            )
        for inp in _input_paths(self.inputs):
            if inp in out.parents:
                raise InputError(f"{self._where()}: lies inside the input {inp}; choose another output")

    @contextlib.contextmanager
    def build(self) -> Iterator[Path]:
        """A temporary sibling directory (or, for a file output, a temporary folder holding the file under
        its final name and its `.meta.json`) moved into place when the block succeeds."""
        self.check()
        replacing = self.path.exists()
        with made_parents(self.path.parent), staging(self.path.parent, self.path.name) as tmp:
            tree = contextlib.nullcontext() if self.is_file else results_tree(self.path, tmp)
            with tree:
                yield tmp
            if replacing:
                self.check()  # still ours to replace
            if self.is_file:
                self._publish_file(tmp, replacing)
            else:
                write_marker(tmp, self.command)
                publish(tmp, self.path, replace=replacing, where=self._where())

    def _publish_file(self, tmp: Path, replacing: bool) -> None:
        meta = self.path.with_suffix(".meta.json")
        if not replacing and (self.path.exists() or meta.exists()):
            raise InputError(f"{self._where()}: appeared while this command ran; nothing was written")
        os.replace(tmp / meta.name, meta)
        os.replace(tmp / self.path.name, self.path)


# -- results trees ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A results tree: where it will live (`final`) and where it is built now (`building`: a staging
    sibling of `final`, or `final` itself). Both absolute."""

    final: Path
    building: Path

    def to_final(self, path: Path) -> Path:
        """`path` (absolute) with a staging prefix replaced by the tree's final place."""
        return self.final / path.relative_to(self.building) if _inside(path, self.building) else path


_TREE: contextvars.ContextVar[Tree | None] = contextvars.ContextVar("lnprobe_results_tree", default=None)


def _abs(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))  # lexical: symbolic links kept as named


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@contextlib.contextmanager
def results_tree(final: str | Path, building: str | Path | None = None) -> Iterator[Tree]:
    """Within the block, `final` (being built at `building`, default `final`) is the results tree, unless
    a tree being built already encloses it (a probe's output inside the claims', the claims' inside the
    demo's): the outermost folder a command writes is the root of everything written inside it."""
    current = _TREE.get()
    here = _abs(building or final)
    if current is not None and _inside(here, current.building):
        yield current
        return
    tree = Tree(_abs(final), here)
    token = _TREE.set(tree)
    try:
        yield tree
    finally:
        _TREE.reset(token)


def tree_root(folder: str | Path) -> Path:
    """Where the root of the results tree holding `folder` is being built now (`folder` itself outside
    any tree)."""
    tree, here = _TREE.get(), _abs(folder)
    return tree.building if tree is not None and _inside(here, tree.building) else here


def saved_path(path: str | Path | None, folder: str | Path) -> str | None:
    """How a JSON file in `folder` (its final place) records `path`: relative to `folder` when the path lies
    in the results tree being written (`results_tree`; else `folder`), absolute when it is another local
    path, as given when it is none (a hub id, a preset name) or None."""
    if path is None or str(path) == "":
        return None if path is None else ""
    tree, here = _TREE.get(), _abs(folder)
    if tree is None or not (_inside(here, tree.building) or _inside(here, tree.final)):
        tree = Tree(here, here)  # outside any tree being written: the folder is its own
    target, here = tree.to_final(_abs(path)), tree.to_final(here)
    if _inside(target, tree.final):
        return Path(os.path.relpath(target, here)).as_posix()
    return str(_abs(path)) if Path(path).expanduser().exists() else str(path)


def saved_paths(value, folder: str | Path):
    """`saved_path` over a string, or each string of a list, tuple or dict's values (None kept)."""
    if isinstance(value, dict):
        return {k: saved_paths(v, folder) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [saved_paths(v, folder) for v in value]
    return saved_path(value, folder)


def read_path(value: str | Path, folder: str | Path) -> Path:
    """A path a JSON file in `folder` recorded (`saved_path`): a relative one from the file's folder; in a
    file written before paths were recorded so, relative to the working directory, when only that exists."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    here = Path(folder) / path
    return path if not here.exists() and path.exists() else here


def write_marker(directory: Path, command: str) -> None:
    record = {"command": command, "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    (directory / MARKER).write_text(json.dumps(record) + "\n")


def remove_weights(checkpoint: Path, names: Iterable[str], command: str, why: str, keep: str) -> list[Path]:
    """Delete the files `names` that lie directly in `checkpoint` (a checkpoint of a run lnprobe wrote, which
    the caller has checked with `Output.check`), after recording in checkpoint/WEIGHTS_REMOVED which command
    removed them, why and which flag keeps them, so that every reader can say so (`removed_weights`). Only
    regular files are deleted (never a link, a folder or a file of another name); returns those deleted.
    Running it again deletes nothing more and keeps the first note."""
    doomed = [
        checkpoint / n for n in names if (checkpoint / n).is_file() and not (checkpoint / n).is_symlink()
    ]
    note = checkpoint / WEIGHTS_REMOVED
    if doomed and not note.is_file():
        record = {"command": command, "why": why, "keep": keep, "removed": sorted(p.name for p in doomed)}
        record["time_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ")
        tmp = checkpoint / f".{WEIGHTS_REMOVED}.tmp"
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, note)  # the note first: a weight file never goes missing unexplained
    for path in doomed:
        path.unlink()
    return doomed


def removed_weights(path: str | Path) -> str | None:
    """One line saying that the checkpoint at `path` lost its weights to lnprobe, which command removed
    them, why and what keeps them (its WEIGHTS_REMOVED note); None when it has no such note."""
    note = Path(path) / WEIGHTS_REMOVED
    try:
        record = json.loads(note.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    command, why, keep = (record.get(k) or "?" for k in ("command", "why", "keep"))
    return f"{path}: its weights were removed by `lnprobe {command}` ({why}); {keep} keeps them"


def claim_dir(out: Path, command: str) -> None:
    """A new directory marked as `command`'s, or an earlier run's of the same command to reuse (a
    command that continues where it stopped: `lnprobe demo`, `study`, `pretrain backbones`)."""
    if out.exists():
        Output(out, command, force=True).check()
        return
    Output(out, command).check()
    make_parents(out)
    write_marker(out, command)


def make_parents(path: Path) -> list[Path]:
    """Create directory `path` and its missing parents; returns those created, deepest first."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create directory ({exc.strerror})") from None
    return missing


def remove_if_empty(dirs: list[Path]) -> None:
    for p in dirs:  # deepest first
        with contextlib.suppress(OSError):
            p.rmdir()


@contextlib.contextmanager
def made_parents(path: Path) -> Iterator[None]:
    """Create `path` and its missing parents; remove the ones created here if the block fails."""
    created = make_parents(path)
    try:
        yield
    except BaseException:
        remove_if_empty(created)
        raise


def staging_dir(parent: Path, name: str) -> Path:
    """A fresh temporary directory in `parent` (same filesystem, so a rename into place is atomic)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    except OSError as exc:
        raise InputError(f"{parent}: cannot write here ({exc.strerror})") from None


@contextlib.contextmanager
def staging(parent: Path, name: str) -> Iterator[Path]:
    """`staging_dir`, removed unless the block moved it away."""
    tmp = staging_dir(parent, name)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, out: Path, replace: bool = True, where: str = "") -> None:
    """Move the directory `tmp` to `out`. With `replace`, an existing `out` (already checked replaceable)
    is moved aside first and removed only once the new one is in place; without, an `out` that appeared
    meanwhile (another writer) is left alone and the move fails."""
    if not replace:
        try:
            os.rename(tmp, out)  # fails on an existing non-empty directory or a file
        except OSError:
            raise InputError(f"{where or out}: appeared while this command ran; not replaced") from None
        return
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old)


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Internal outputs inside a directory lnprobe owns (a run's checkpoints): build beside, move in,
    replacing a previous one of the same name. Not for user-named outputs (use `Output`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging(out.parent, out.name) as tmp:
        yield tmp
        publish(tmp, out)


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


def write_csv(path: Path, header, rows) -> None:
    """A CSV file (Python's default dialect): the header, then each row."""
    import csv

    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
