"""What a finished miniature keeps of its checkpoints (`prune_miniature`; issue 28).

Every stage of the miniature writes a checkpoint, but the stages after the sweep load only some of them:
the assembled model, the connector-pretrained base and, per regime, the sweep run it picked. The others
have served once they are scored (their numbers are in their own result.json and metrics, in the sweep's
table and in accuracy.json), and their weights were most of the demo's tree (issue 17, item 4). So once
every stage has run, their weight files go and everything they record stays: `lnprobe runs` lists them with
their numbers, the sweep reuses them on a re-run (never retraining them), and `lnprobe.models.load` on one
says in one line that the demo removed its weights. `--keep-checkpoints` keeps everything.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.io import Output, remove_weights

# The weight files of an lnprobe checkpoint: the model part (a full HF checkpoint, whole or in shards, or a
# delta's tensors) and the exact-resume state (optimizer moments, RNG states). Nothing else is deleted.
WEIGHT_FILES = (
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "delta.safetensors",
    "optimizer.safetensors",
    "rng.safetensors",
)
NOT_PICKED = "a sweep run it did not pick"
BLIND = "the blind baseline, once scored"
CONNECTOR = "the connector pre-training, merged into base"


def prune_miniature(
    out: Path, swept: Iterable[Path], picked: Iterable[Path], command: str, inputs: Iterable[str | None] = ()
) -> list[Path]:
    """Delete the weights of the checkpoints that no later stage of the finished miniature in `out` loads.

    Goes: the weight files (`WEIGHT_FILES`: model.safetensors or its shards, delta.safetensors,
    optimizer.safetensors, rng.safetensors) of every checkpoint of
      - each run in `swept` (the sweep's runs) that is not in `picked` (each regime's picked run),
      - OUT/blind, the blind baseline (call this once accuracy.json holds its score),
      - OUT/runs/connector, the connector pre-training (OUT/base holds the same weights, merged).
    Stays:
      - OUT/assembled, OUT/base and each picked run, whole;
      - of a pruned run everything else: lnprobe_config.json, result.json, metrics.jsonl, gradvar.jsonl,
        gradvar_trace.safetensors, tensorboard/, `latest`, and in each checkpoint trainer_state.json, the
        model config or delta description and the processor files, beside a weights_removed.json note
        (what went, why, and that `lnprobe COMMAND --keep-checkpoints` keeps it);
      - anything lnprobe did not write: a run folder without its `train` marker (`prune_run`), a file of
        another name, a link; any input (`inputs`: the backbones named on the command line).
    Returns the files deleted."""
    keep = {Path(p).absolute() for p in picked}
    doomed = [(run, NOT_PICKED) for run in swept if Path(run).absolute() not in keep]
    doomed += [(out / "blind", BLIND), (out / "runs" / "connector", CONNECTOR)]
    flag = f"`lnprobe {command} --keep-checkpoints`"
    return [f for run, why in doomed for f in prune_run(Path(run), command, why, flag, inputs)]


def prune_run(run: Path, command: str, why: str, keep: str, inputs: Iterable[str | None] = ()) -> list[Path]:
    """The weight files of every complete checkpoint of the training run `run` deleted (`io.remove_weights`),
    when the output policy allows it (`Output.check`: `run` is a folder lnprobe wrote for `train`, not a
    link, neither an input nor holding or lying inside one) and no other process holds the run; otherwise
    nothing is touched. Returns the files deleted."""
    from lnprobe.train.rundir import RunLock

    if not run.is_dir():
        return []
    try:
        Output(run, "train", force=True, inputs=tuple(p for p in inputs if p)).check()
        lock = RunLock(run)
        lock.acquire()
    except InputError:
        return []
    try:
        return [f for c in checkpoints(run) for f in remove_weights(c, weight_files(c), command, why, keep)]
    finally:
        lock.release()


def checkpoints(run: Path) -> list[Path]:
    """The complete checkpoints lnprobe wrote in `run` (checkpoints/step-*, each with its trainer state)."""
    from lnprobe.train.state import STATE_FILE

    found = sorted((run / "checkpoints").glob("step-*"))
    return [c for c in found if c.is_dir() and not c.is_symlink() and (c / STATE_FILE).is_file()]


def weight_files(checkpoint: Path) -> list[str]:
    """The names in `checkpoint` that are weight files (`WEIGHT_FILES`)."""
    names = sorted(p.name for p in checkpoint.iterdir())
    return [n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in WEIGHT_FILES)]
