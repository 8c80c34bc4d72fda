"""A training run's directory: one writer at a time (a lock file naming its holder), and a fresh run that
appears only once its set-up has passed (it is prepared in a staging sibling and renamed into place)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import warnings
from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.io import make_parents, publish, remove_if_empty, staging_dir, write_marker

LOCK = ".lnprobe.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """`run/.lnprobe.lock` holding {"pid", "host"}, created exclusively. A second writer gets InputError
    naming the holder; a lock whose process is gone (same host) is taken over with a warning."""

    def __init__(self, run: Path) -> None:
        self.path, self.held = Path(run) / LOCK, False

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                    warnings.warn(
                        f"{self.path}: taking over the stale lock of process {holder.get('pid')}",
                        stacklevel=2,
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                raise InputError(
                    f"{self.path.parent}: in use by process {holder.get('pid')} on {holder.get('host')} "
                    f"(remove {self.path} if that process is gone)"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise InputError(f"{self.path}: could not take the lock")

    def _holder(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def remove_stale_temps(run: Path) -> list[Path]:
    """Temporary directories a killed checkpoint write left behind (`checkpoints/.step-*`) and a stale
    `latest` pointer temp: lnprobe wrote them, nothing else names them."""
    stale = [p for p in (Path(run) / "checkpoints").glob(".step-*") if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    pointer = Path(run) / ".latest.tmp"
    if pointer.is_file():
        pointer.unlink()
        stale.append(pointer)
    return stale


class FreshRun:
    """Set-up of a new run inside a staging directory beside `run`: `dir` is where set-up writes (the tiny
    base, the config); `publish()` renames it to `run` (failing, and leaving `run` alone, if another
    writer created it meanwhile); `close()` without publishing removes everything set-up wrote, the
    parent directories it created included."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        self._created = make_parents(self.run.parent)
        try:
            self.dir = staging_dir(self.run.parent, self.run.name)
        except InputError:
            remove_if_empty(self._created)
            raise
        self.lock = RunLock(self.dir)
        self.lock.acquire()
        self.lock.path = self.run / LOCK  # where the lock lives once published
        self.published = False

    def publish(self) -> None:
        write_marker(self.dir, "train")
        publish(self.dir, self.run, replace=False, where=f"--out {self.run}")
        self.published = True

    def close(self) -> None:
        """Undo an unpublished set-up (a failure before training started)."""
        if not self.published:
            shutil.rmtree(self.dir, ignore_errors=True)
            remove_if_empty(self._created)


class RunClaim:
    """The run directory as one training process holds it. `dir` is where set-up writes: for a new run
    a staging directory beside `run` (made by the main process; the others are told where), for a resumed
    run the run itself, locked against a second writer and cleared of what a killed checkpoint write
    left. `release()` unlocks and removes an unpublished set-up."""

    def __init__(self, run: Path, resuming: bool, accelerator) -> None:
        main = accelerator.is_main_process
        self.fresh: FreshRun | None = None
        self.lock: RunLock | None = None
        if resuming:
            self.dir = Path(run)
            if main:
                self.lock = RunLock(run)
                self.lock.acquire()
                for path in remove_stale_temps(run):
                    warnings.warn(f"removed {path}, left by an interrupted checkpoint write", stacklevel=3)
            return
        if main:
            self.fresh = FreshRun(run)
            self.lock = self.fresh.lock
        staged = [str(self.fresh.dir) if main else None]
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(staged)
        self.dir = Path(staged[0])

    def release(self) -> None:
        if self.fresh is not None:
            self.fresh.close()
        if self.lock is not None:
            self.lock.release()


def check_run_dir(config) -> Path | None:
    """The checkpoint a run resumes from (None for a fresh run), after the checks: a fresh run's --out
    holds no run and is not an input; a resumed one has a checkpoint whose config differs from `config`
    only where a resume may change it (TrainConfig's RESUMABLE_CHANGES, or SHARDED_RESUMABLE_CHANGES)."""
    from dataclasses import asdict

    from lnprobe.io import Output
    from lnprobe.train import state as ckpt_io
    from lnprobe.train.config import RESUMABLE_CHANGES, SHARDED_RESUMABLE_CHANGES

    run = Path(config.out)
    latest = ckpt_io.latest_checkpoint(run) if run.is_dir() else None
    if not config.resume:
        if latest is not None:
            raise InputError(f"{run}: already holds a run (--resume {run} continues it; or another --out)")
        Output(
            run, "train", inputs=(config.model, config.data, config.eval_data, config.image_folder)
        ).check()
        return None
    if latest is None:
        raise InputError(f"{run}: no checkpoint to resume from")
    saved = {"shard": "none", **ckpt_io.read_state(latest)["config"]}  # runs from before --shard
    mine = asdict(config)
    may_change = SHARDED_RESUMABLE_CHANGES if config.shard == "fsdp" else RESUMABLE_CHANGES
    changed = sorted(k for k in mine if k not in may_change and saved.get(k) != mine[k])
    if changed:
        raise InputError(f"{run}: --resume with a different config ({', '.join(changed)} differ)")
    return latest
