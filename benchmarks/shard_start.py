"""Peak resident memory of the `--shard fsdp` set-up with 2 processes (torchrun, gloo, CPU), in copies of the
weights: the large-model start (process 0 loads the weights, process 1 builds the model on the meta device
and receives one tensor at a time: lnprobe.train.shard_start) against every process loading the weights
(`shard_start.ENABLED = False`), side by side on the same model, data and settings (`full`, fp32).

    python benchmarks/shard_start.py [--repeats 3]

Each set-up runs in a fresh `torchrun` launch; each process records its VmHWM above the level just before
set-up (after `/proc/self/clear_refs`). A measurement, so it lives here: tests/train/test_shard.py counts
what the start materialises instead. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lnprobe.models.config import TinyConfig  # noqa: E402

# ~151 MB of fp32 weights in 4 MB tensors (the shape tests/train/shard_worker.py uses)
WIDE = TinyConfig(hidden_size=1024, intermediate_size=1024, num_layers=5, num_heads=8, num_kv_heads=8)


def peak_kb() -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1])


def worker(mode: str, out: Path, data: str, base: str) -> None:
    """One process of a launch: set up `full` training of `base`, record the set-up's peak above before."""
    from lnprobe.train import TrainConfig, shard_start
    from lnprobe.train.trainer import Trainer

    shard_start.ENABLED = mode == "start"
    rank = int(os.environ["RANK"])
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current resident memory
    before = peak_kb()
    config = dict(model=base, data=data, out=str(out / "run"), regime="full", shard="fsdp", progress=False)
    trainer = Trainer(TrainConfig(**config))
    (out / f"peak-r{rank}.json").write_text(json.dumps({"kb": peak_kb() - before}))
    trainer.release()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(mode: str, out: Path, data: str, base: str) -> list[float]:
    """One torchrun launch of 2 processes; their peaks in bytes."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    command = [torchrun, "--nproc-per-node", "2", "--master-port", str(free_port()), __file__]
    done = subprocess.run(
        [*command, "--worker", mode, str(out), data, base],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return [json.loads((out / f"peak-r{r}.json").read_text())["kb"] * 1024 for r in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from lnprobe.data.synth import SynthConfig, write_synth
    from lnprobe.models import save_tiny

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = str(write_synth(root / "synth", SynthConfig(n=40, seed=0)) / "instruct.json")
        base = root / "wide-base"
        save_tiny(base, WIDE)
        size = (base / "model.safetensors").stat().st_size
        print(f"weights: {size / 1e6:.1f} MB; set-up peak above the level before it, in weight copies")
        print("repeat  start r0  start r1  load r0  load r1  r1 start/load")
        for i in range(args.repeats):
            peaks = {}
            for mode in ("start", "load"):
                out = root / f"{mode}-{i}"
                out.mkdir()
                peaks[mode] = [p / size for p in launch(mode, out, data, str(base))]
            s, lo = peaks["start"], peaks["load"]
            print(f"{i:6d}  {s[0]:8.2f}  {s[1]:8.2f}  {lo[0]:7.2f}  {lo[1]:7.2f}  {s[1] / lo[1]:13.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        main()
