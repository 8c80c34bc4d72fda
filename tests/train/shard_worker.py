"""Run by tests/train/test_shard.py under `torchrun --nproc-per-node 2 -m tests.train.shard_worker OUT DATA
EVAL`: the `lnprobe train --shard fsdp` command line, in one launch (one start-up for every case):

* OUT/<regime>: 3 steps, batch 2 per process, for ln-simp, ln, lora (dropout 0) and full;
* OUT/resume: ln, 4 steps, checkpoints at steps 2 and 4, evaluated at the end; copied to OUT/uninterrupted,
  then cut back to its step-2 checkpoint (plus what a checkpoint write killed midway leaves) and
  `--resume`d to step 4;
* OUT/to-one: ln, 2 steps (the test resumes it in one process).
"""

import shutil
import sys
from pathlib import Path

import torch.distributed as dist

from lnprobe.cli.core import main

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


if __name__ == "__main__":
    run(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
