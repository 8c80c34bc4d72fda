"""Run by tests/train/test_shard.py under `torchrun --nproc-per-node 2 -m tests.train.shard_worker OUT DATA
EVAL WIDE_BASE`: the `lnprobe train --shard fsdp` command line, in one launch (one start-up for every case):

* OUT/<regime>: 3 steps, batch 2 per process, for ln-simp, ln, lora (dropout 0) and full;
* OUT/resume: ln, 4 steps, checkpoints at steps 2 and 4, evaluated at the end; copied to OUT/uninterrupted,
  then cut back to its step-2 checkpoint (plus what a checkpoint write killed midway leaves) and
  `--resume`d to step 4;
* OUT/to-one: ln, 2 steps (the test resumes it in one process);
* OUT/killed: made by an earlier launch (`shard_worker kill OUT DATA EVAL`, `killed_run`) as OUT/resume, whose
  every process was SIGKILLed after step 3; what that left is recorded (`killed-before.json`), then it is
  `--resume`d to step 4;
* OUT/sweep: `lnprobe sweep --shard fsdp`, ln-simp at lr 0.01 and 0.02, 3 steps;
* OUT/ln-load, OUT/full-load: as OUT/ln and OUT/full, but every process loads the weights (the start
  before the large-model start, lnprobe.train.shard_start);
* OUT/memory: the set-up alone (large-model start, `full`) of WIDE_BASE (WIDE: 139 MB of weights): what
  it materialises on each process (`setup-r<rank>.json`: loads, bytes held, whole tensors made and alive
  at once, shard bytes; see SetUpCount) and its non-persistent buffers afterwards
  (`buffers-r<rank>.safetensors`).
"""

import json
import os
import shutil
import signal
import sys
import weakref
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from lnprobe.cli.core import main
from lnprobe.models import TinyConfig
from lnprobe.train import Callback, TrainConfig, shard_start, train
from lnprobe.train.trainer import Trainer

# ~140 MB of weights in 4 MB tensors (the start holds one whole tensor at a time besides its shards)
WIDE = TinyConfig(hidden_size=1024, intermediate_size=1024, num_layers=5, num_heads=8, num_kv_heads=8)

REGIMES = ("ln-simp", "ln", "lora", "full")


def flags(out: Path, data: str, regime: str, steps: int) -> list[str]:
    return [
        "train", "--shard", "fsdp", "--data", data, "--out", str(out), "--regime", regime, "--max-steps",
        str(steps), "--batch-size", "2", "--lr", "0.01", "--lora-dropout", "0", "--no-progress",
    ]  # fmt: skip


def cut_back(run: Path, step: int) -> None:
    """`run` as it was right after its checkpoint `step` (later checkpoints and the result gone)."""
    for ckpt in (run / "checkpoints").iterdir():
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)
    (run / "latest").write_text(f"step-{step:06d}\n")
    (run / "result.json").unlink()
    killed = run / "checkpoints" / f".step-{step + 1:06d}.killed" / "shards"  # a write killed midway
    killed.mkdir(parents=True)
    (killed / "shard-00001-model-00001-of-00001.safetensors").write_bytes(b"partial")


def run(out: Path, data: str, eval_data: str) -> None:
    for regime in REGIMES:
        assert main(flags(out / regime, data, regime, 3)) == 0
    assert main(flags(out / "to-one", data, "ln", 2)) == 0
    extra = ["--save-every", "2", "--eval-data", eval_data]
    assert main([*flags(out / "resume", data, "ln", 4), *extra]) == 0
    if dist.get_rank() == 0:
        shutil.copytree(out / "resume", out / "uninterrupted")
        cut_back(out / "resume", 2)
    dist.barrier()
    assert main([*flags(out / "resume", data, "ln", 4), *extra, "--resume", str(out / "resume")]) == 0
    killed = out / "killed"
    if dist.get_rank() == 0:
        left = {
            "latest": (killed / "latest").read_text().strip(),
            "lock": (killed / ".lnprobe.lock").is_file(),
        }
        (out / "killed-before.json").write_text(json.dumps(left))
    dist.barrier()
    assert main([*flags(killed, data, "ln", 4), *extra, "--resume", str(killed)]) == 0
    sweep = flags(out / "sweep", data, "ln-simp", 3)
    for flag in ("--regime", "--lr"):  # sweep takes --regimes and --lrs instead
        at = sweep.index(flag)
        del sweep[at : at + 2]
    assert main(["sweep", *sweep[1:], "--regimes", "ln-simp", "--lrs", "0.01,0.02"]) == 0


def killed_run(out: Path, data: str, eval_data: str) -> None:
    """OUT/killed: OUT/resume's settings (ln, 4 steps, checkpoints at 2 and 4, evaluated), every process
    SIGKILLed right after step 3, so its step-2 checkpoint is the last one written."""

    class Kill(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 3:
                os.kill(os.getpid(), signal.SIGKILL)

    config = TrainConfig(
        shard="fsdp", data=data, out=str(out / "killed"), regime="ln", max_steps=4, batch_size=2, lr=0.01,
        lora_dropout=0.0, progress=False, save_every=2, eval_data=eval_data,
    )  # fmt: skip
    train(config, [Kill()])


def full_load_runs(out: Path, data: str) -> None:
    shard_start.ENABLED = False
    try:
        for regime in ("ln", "full"):
            assert main(flags(out / f"{regime}-load", data, regime, 3)) == 0
    finally:
        shard_start.ENABLED = True


def local_bytes(tensors) -> int:
    """Bytes this process holds of `tensors` (a DTensor's local shard; meta tensors hold none)."""
    from torch.distributed.tensor import DTensor

    parts = (t.to_local() if isinstance(t, DTensor) else t for t in tensors)
    return sum(t.numel() * t.element_size() for t in parts if not t.is_meta)


class SetUpCount:
    """What the large-model start materialises on this process, counted at the functions it goes through
    (lnprobe.train.shard's build_model, shard_start's build_on_meta, materialize and whole_tensor): loads
    of the weights, bytes of weights held before the shards are filled, every whole tensor made while
    filling them (and how many held memory at once: a tensor gone, or whose storage was freed, holds
    none), and the bytes of this process's shards afterwards."""

    def __init__(self) -> None:
        self.record = {"loads": 0, "meta_builds": 0, "wholes": 0, "whole_bytes": 0, "whole_max_bytes": 0}
        self.record["whole_max_alive"] = 0
        self.made: list[weakref.ref] = []  # the whole tensors made so far that still hold memory
        self.patched = []

    def patch(self, module, name: str, wrapper) -> None:
        original = getattr(module, name)
        self.patched.append((module, name, original))
        setattr(module, name, wrapper(original))

    def __enter__(self):
        from lnprobe.train import shard

        self.patch(shard, "build_model", lambda f: self.counted("loads", f))
        self.patch(shard_start, "build_on_meta", lambda f: self.counted("meta_builds", f))
        self.patch(shard_start, "materialize", self.materialize)
        self.patch(shard_start, "whole_tensor", self.whole_tensor)
        return self

    def __exit__(self, *exc) -> None:
        for module, name, original in reversed(self.patched):
            setattr(module, name, original)

    def counted(self, key: str, f):
        def wrapped(*args, **kw):
            self.record[key] += 1
            return f(*args, **kw)

        return wrapped

    def materialize(self, f):
        def wrapped(root, full, device):
            self.record["held_before"] = local_bytes([*root.parameters(), *root.buffers()])
            self.record["full_bytes"] = local_bytes(full.values())
            f(root, full, device)
            self.record["shard_bytes"] = local_bytes(root.parameters())

        return wrapped

    def whole_tensor(self, f):
        def wrapped(target, source, device):
            whole = f(target, source, device)
            size = whole.numel() * whole.element_size()
            self.made = [w for w in self.made if w() is not None and w().untyped_storage().nbytes()]
            self.made.append(weakref.ref(whole))
            r = self.record
            r["wholes"], r["whole_bytes"] = r["wholes"] + 1, r["whole_bytes"] + size
            r["whole_max_bytes"] = max(r["whole_max_bytes"], size)
            r["whole_max_alive"] = max(r["whole_max_alive"], len(self.made))
            return whole

        return wrapped


def memory_run(out: Path, data: str, base: str) -> None:
    """Set up (no step) `full` training of `base` (made by the test from WIDE) with the large-model start,
    recording what it materialises on each process (`SetUpCount`, `setup-r<rank>.json`) and the
    non-persistent buffers afterwards. (Its resident-memory peak is a measurement:
    benchmarks/shard_start.py.)"""
    rank = int(os.environ["RANK"])  # the process group starts with the trainer
    config = dict(model=base, data=data, out=str(out / "run"), regime="full", shard="fsdp", progress=False)
    with SetUpCount() as count:
        trainer = Trainer(TrainConfig(**config))
    (out / f"setup-r{rank}.json").write_text(json.dumps(count.record))
    found = shard_start.non_persistent_buffers(trainer.model)
    buffers = {name: owner._buffers[key].detach().contiguous().clone() for name, owner, key in found}
    save_file(buffers, str(out / f"buffers-r{rank}.safetensors"))
    trainer.release()


if __name__ == "__main__":
    if sys.argv[1] == "kill":
        killed_run(Path(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit("not killed")
    out, data = Path(sys.argv[1]), sys.argv[2]
    run(out, data, sys.argv[3])
    full_load_runs(out, data)
    memory_run(out / "memory", data, sys.argv[4])
