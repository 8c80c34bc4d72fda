"""Wall time of the paper miniature per stage (issue 14): `make demo`'s default scale on this machine,
and, given a finished `lnprobe study` directory, each seed's stages.

    python benchmarks/miniature_time.py                # runs the demo into a temporary directory
    python benchmarks/miniature_time.py runs/study     # reads the study's per-seed timings

A stage reused from an earlier run is not timed again (its first time is kept in OUT/timings.json).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    if len(sys.argv) > 1:
        study = json.loads((Path(sys.argv[1]) / "study.json").read_text())
        for seed, timings in study["timings"].items():
            _print(f"study seed {seed}", timings)
        total = sum(sum(t.values()) for t in study["timings"].values())
        print(f"study total: {total:.0f} s over {len(study['timings'])} seeds")
        return
    from rich.console import Console

    from lnprobe.miniature.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        record = run_demo(Path(tmp) / "demo", console=Console(quiet=True))
        wall = time.perf_counter() - start
    _print("demo (default scale)", record["timings"])
    print(f"demo wall time: {wall:.0f} s (stages plus loading, tables and figures)")


def _print(title: str, timings: dict) -> None:
    print(title)
    for stage, seconds in timings.items():
        print(f"  {stage:10} {seconds:7.1f} s")
    print(f"  {'sum':10} {sum(timings.values()):7.1f} s")


if __name__ == "__main__":
    main()
