"""A training run's logs: metrics.jsonl (one JSON line per logged step), TensorBoard scalars under
RUN/tensorboard when the package is installed, and the progress bar."""

from __future__ import annotations

import importlib.util
import json
from contextlib import nullcontext
from pathlib import Path

from lnprobe.errors import InputError


def tensorboard_writer(path: Path, start_step: int = 0):
    """A TensorBoard SummaryWriter when the `tensorboard` package is installed, else None. A run resumed
    from its checkpoint at `start_step` purges the events its interrupted predecessor logged after that
    step (they are re-run and logged again): TensorBoard drops earlier events at steps >= purge_step."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(path), purge_step=start_step + 1 if start_step else None)


def append_metrics(path: Path, tensorboard, metrics: dict) -> None:
    """One step's metrics appended to `path` (metrics.jsonl) and, when given, to TensorBoard."""
    with path.open("a") as fh:
        fh.write(json.dumps(metrics) + "\n")
    if tensorboard is not None:
        for key, value in metrics.items():
            if key != "step":
                tensorboard.add_scalar(f"train/{key}", value, metrics["step"])
        tensorboard.flush()


def trim_metrics(path: Path, step: int) -> None:
    """On resume, drop the logged steps after the checkpoint's `step` (they are re-run), and a last line
    cut short by the kill that interrupted the run; a line that is not JSON before the last is an error."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a write the kill cut short: its step is re-run
                break
            raise InputError(f"{path}: line {number} is not JSON; the run cannot resume its log") from None
        if row["step"] <= step:
            keep.append(line)
    path.write_text("".join(line + "\n" for line in keep))


def progress_bar(enabled: bool):
    """A rich progress display with loss, learning rate and tokens per second (a null context if off)."""
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[tps]:,.0f} tok/s"),
        TimeRemainingColumn(),
    )
