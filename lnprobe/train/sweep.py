"""`lnprobe sweep`: a grid of training runs (regimes x learning rates x seeds), sequential or as parallel
processes (or, with `--shard fsdp` under torchrun, one after another, each sharded over every process),
skipping finished runs and resuming interrupted ones, then a tidy table and the best learning
rate per regime (lowest mean held-out loss over seeds; training loss when there is no held-out data)."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import multiprocessing
import os
import statistics
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from lnprobe.data.llava import read_records
from lnprobe.errors import InputError
from lnprobe.io import MARKER, Output, make_parents, remove_if_empty, saved_path, write_marker
from lnprobe.regimes import resolve_regime
from lnprobe.train.config import TrainConfig
from lnprobe.train.trainer import RESULT_FILE, train

FollowUp = Callable[[TrainConfig], list[TrainConfig]]
PAPER_LRS = (2e-3, 1e-3, 6e-4, 3e-4, 1e-4, 5e-5, 2e-5, 1e-5, 6e-6, 1e-6, 1e-7)
COLUMNS = (
    "regime",
    "lr",
    "seed",
    "steps",
    "final_loss",
    "eval_loss",
    "best_eval_loss",
    "eval_accuracy",
    "run",
)


@dataclass(frozen=True)
class SweepRun:
    regime: str
    lr: float
    seed: int
    out: Path

    def config(self, base: TrainConfig) -> TrainConfig:
        resume = str(self.out) if (self.out / "latest").is_file() else None
        return base.replace(regime=self.regime, lr=self.lr, seed=self.seed, out=str(self.out), resume=resume)


def plan(
    base: TrainConfig, out: Path, regimes: list[str], lrs: list[float], seeds: list[int]
) -> list[SweepRun]:
    for regime in regimes:
        resolve_regime(regime)
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
        raise InputError(f"--lrs must be positive numbers, got {lrs}")
    if not regimes or not seeds:
        raise InputError("--regimes and --seeds need at least one value each")
    for seed in seeds:
        base.replace(seed=seed)  # the seed's range is checked by TrainConfig
    return [SweepRun(r, lr, s, out / r / f"lr{lr:g}-seed{s}") for r in regimes for lr in lrs for s in seeds]


def claim_out(base: TrainConfig, out: Path) -> list[Path]:
    """A new sweep directory (with its marker), or an earlier sweep's to continue; anything else at `out`
    is refused. Returns the directories created here."""
    inputs = (base.model, base.data, base.eval_data, base.image_folder)
    continuing = out.exists()
    Output(out, "sweep", force=continuing, inputs=inputs).check()
    if continuing:
        return []
    created = make_parents(out)
    write_marker(out, "sweep")
    return created


def run_sweep(
    base: TrainConfig,
    out: Path,
    runs: list[SweepRun],
    parallel: int = 1,
    follow_up: FollowUp | None = None,
    first: Callable[[SweepRun], bool] | None = None,
) -> list[dict]:
    """Run what is not finished yet, then collect every run's result into OUT/sweep.{csv,json}. A new
    sweep that fails before any run finished leaves nothing behind.

    `first(run)`: runs started before the others (the order of the rows stays that of `runs`).
    `follow_up(config)`: called in this process after each run finishes; the training configs it returns
    (runs outside the sweep that depend on finished ones, e.g. a baseline at the learning rate the sweep
    picked) are trained by the same workers, their results not among the rows."""
    read_records(base.data)  # bad data stops before anything is written
    if base.shard == "fsdp" and parallel > 1:
        raise InputError(
            "--parallel: a --shard fsdp sweep trains one run at a time on all of the launch's processes"
        )
    main, barrier = _launch(base)
    created = claim_out(base, out) if main else []
    barrier()
    try:
        _train(base, runs, parallel, follow_up, first)
        barrier()  # process 0 writes each run's result.json when the run ends: read them after
        rows = [result_row(r) for r in runs]
        if main:
            _write(out, rows)
        barrier()  # sweep.csv / sweep.json are written
        return rows
    except BaseException:
        if created and not any(p.name != MARKER for p in out.iterdir()):
            (out / MARKER).unlink()
            remove_if_empty(created)
        raise


def _launch(base: TrainConfig) -> tuple[bool, Callable[[], None]]:
    """(whether this is the process that writes the sweep's own files, a barrier). A `--shard fsdp` sweep
    under torchrun runs every run in turn on every process (each run sharded over them all); process 0
    claims OUT and writes the table. Otherwise: (True, no-op)."""
    if base.shard != "fsdp" or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return True, lambda: None
    from accelerate import PartialState

    state = PartialState()  # torchrun's process group, the one the runs' trainers join
    return state.is_main_process, state.wait_for_everyone


def main_process(base: TrainConfig) -> bool:
    """Whether this process reports the sweep (all but process 0 of a sharded launch stay quiet)."""
    return _launch(base)[0]


def _train(base: TrainConfig, runs: list[SweepRun], parallel: int, follow_up, first) -> None:
    """Train every run that has not finished yet (and what `follow_up` adds)."""
    ordered = sorted(runs, key=lambda r: not first(r)) if first else runs
    unfinished = [r for r in ordered if not (r.out / RESULT_FILE).is_file()]
    for r in unfinished:
        restart_interrupted(r.out)
    todo = [r.config(base.replace(progress=False)) for r in unfinished]
    follow_up = follow_up or (lambda config: [])
    if parallel <= 1:
        while todo:
            config = todo.pop(0)
            train(config)
            todo += follow_up(config)
    elif todo:
        threads = max(1, (os.cpu_count() or 1) // parallel)  # share the cores, never oversubscribe
        _in_workers(todo, min(parallel, len(todo)), threads, follow_up)


def restart_interrupted(run: Path) -> bool:
    """Remove a run folder that `lnprobe train` wrote and that was interrupted before its first checkpoint
    (its marker says train; no `latest`, no result): nothing in it can be resumed, and its step records
    would mislead. Anything else is left alone (a checkpointed run resumes; another folder is refused by the
    run itself). Returns whether it removed the folder."""
    import shutil

    if not run.is_dir() or (run / "latest").exists() or (run / RESULT_FILE).exists():
        return False
    try:  # the output policy decides what may go: only `lnprobe train`'s own folder, never a link
        Output(run, "train", force=True).check()
    except InputError:
        return False
    shutil.rmtree(run)
    return True


def _in_workers(configs: list[TrainConfig], workers: int, threads: int, follow_up: FollowUp) -> None:
    """Run the configs in `workers` long-lived processes (each imports torch and lnprobe once, not once per
    run; each gets its share of the cores), in order, adding what `follow_up` returns as runs finish."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
        ) as pool:
            pending = {pool.submit(_worker_train, c): c for c in configs}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    config = pending.pop(future)
                    future.result()  # a failed run stops the sweep here
                    pending |= {pool.submit(_worker_train, c): c for c in follow_up(config)}
    except BrokenProcessPool as e:
        raise RuntimeError(
            f"a sweep worker process died ({e}); out of memory? try a lower --parallel"
        ) from None


def _worker_init(threads: int) -> None:
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)


def _worker_train(config: TrainConfig) -> None:
    """One run in a worker. Its messages go to a log file beside the run, not to the sweep's terminal; the
    log is kept when the run fails."""
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f".{out.name}.log"
    with log.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            train(config)
        except InputError as e:
            raise InputError(f"sweep run {out} failed: {e}") from None
    log.unlink()


def result_row(run: SweepRun) -> dict:
    result = json.loads((run.out / RESULT_FILE).read_text())
    return {
        "regime": run.regime,
        "lr": run.lr,
        "seed": run.seed,
        "steps": result["steps"],
        "final_loss": result["final_loss"],
        "eval_loss": result.get("eval_loss"),
        "best_eval_loss": result.get("best_eval_loss"),
        "eval_accuracy": result.get("eval_accuracy"),
        "run": str(run.out),
    }


def best_lrs(rows: list[dict]) -> dict[str, dict]:
    """Per regime: the learning rate with the lowest mean (over seeds) held-out loss, else training loss."""
    best = {}
    for regime in dict.fromkeys(r["regime"] for r in rows):
        key = "best_eval_loss" if all(r["best_eval_loss"] is not None for r in rows) else "final_loss"
        by_lr: dict[float, list[float]] = {}
        for r in rows:
            if r["regime"] == regime:
                by_lr.setdefault(r["lr"], []).append(r[key])
        lr, losses = min(by_lr.items(), key=lambda item: statistics.fmean(item[1]))
        best[regime] = {"lr": lr, key: statistics.fmean(losses), "seeds": len(losses)}
    return best


def _write(out: Path, rows: list[dict]) -> None:
    """OUT/sweep.csv and sweep.json, each run's folder relative to OUT (`saved_path`): movable."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [{**r, "run": saved_path(r["run"], out)} for r in rows]
    with (out / "sweep.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep.json").write_text(json.dumps({"runs": rows, "best": best_lrs(rows)}, indent=2) + "\n")
