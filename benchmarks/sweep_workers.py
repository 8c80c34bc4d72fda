"""Parallel sweep runs: one fresh process per run (`lnprobe train --config` in a subprocess, as lnprobe did
before) against `run_sweep(parallel=2)`, which runs them in two long-lived worker processes that import
torch and lnprobe once. Same runs (regime ln on the miniature's shape, same learning rates, steps, batch
size and seed), both two at a time with one thread each; the final losses agree (checked), the ratio is the
saving. The tiny model is built from a config, the data made locally.

    python benchmarks/sweep_workers.py [--runs 6] [--steps 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml


def one_process_per_run(configs, threads: int) -> None:
    def run(config):
        out = Path(config.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        path = out.parent / f".{out.name}.yaml"
        path.write_text(yaml.safe_dump(dataclasses.asdict(config)))
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "lnprobe.cli", "train", "--config", str(path)]
        subprocess.run(cmd, check=True, capture_output=True, env=env)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, configs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    from lnprobe.data.synth import SynthConfig, write_synth
    from lnprobe.miniature.config import SHAPE
    from lnprobe.models import save_tiny
    from lnprobe.train.config import TrainConfig
    from lnprobe.train.sweep import plan, run_sweep

    root = Path(tempfile.mkdtemp(prefix="lnprobe-sweep-bench-"))
    data = write_synth(root / "data", SynthConfig(n=200, seed=0))
    base = save_tiny(root / "base", SHAPE)
    lrs = [float(f"{1e-2 * 1.5**i:.3g}") for i in range(args.runs)]
    threads = max(1, (os.cpu_count() or 2) // 2)

    def config(out: Path) -> TrainConfig:
        return TrainConfig(model=str(base), data=str(data / "instruct.json"), out=str(out),
                           max_steps=args.steps, batch_size=16, grad_ckpt="off", progress=False)  # fmt: skip

    print(f"{args.runs} runs of {args.steps} steps (regime ln, miniature shape), two at a time, "
          f"{threads} thread(s) each, {os.cpu_count()} cores")  # fmt: skip
    base_a = config(root / "a")
    runs_a = plan(base_a, root / "a", ["ln"], lrs, [0])
    start = time.perf_counter()
    one_process_per_run([r.config(base_a) for r in runs_a], threads)
    fresh = time.perf_counter() - start
    base_b = config(root / "b")
    start = time.perf_counter()
    rows = run_sweep(base_b, root / "b", plan(base_b, root / "b", ["ln"], lrs, [0]), parallel=2)
    pooled = time.perf_counter() - start
    for run, row in zip(runs_a, rows, strict=True):
        loss = json.loads((run.out / "result.json").read_text())["final_loss"]
        assert abs(loss - row["final_loss"]) <= 1e-4 * abs(loss), (loss, row["final_loss"])
    print(f"one process per run   {fresh:7.1f} s")
    print(f"two worker processes  {pooled:7.1f} s")
    print(f"ratio                 {fresh / pooled:7.2f}x  (same final losses)")


if __name__ == "__main__":
    main()
