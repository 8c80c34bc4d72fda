"""Start-up cost of the command line, side by side with the torch import it is judged against.

Each entry is the wall time, and the CPU time (user + system; close to the wall time on idle cores, and
steadier when others load the machine), of a fresh process (median of --runs, after one discarded warm-up
run):

* `import torch`: the floor every command that does real work pays;
* `lnprobe --help`, `lnprobe train --help`, `lnprobe sites --help`: should import neither torch nor
  transformers;
* `lnprobe regimes`: a real command whose work (two tables) is negligible, so its wall time is its start-up;
* start-up of `lnprobe params tiny`: everything up to the command's work (Python, the command line, argument
  parsing, the command's own imports), measured by running the command with its first work call
  (`resolve_config`) replaced by an immediate exit;
* `import torch + transformers (models.load's)`: torch and the transformers classes `lnprobe.models.load`
  imports, the floor of every command that builds a model (transformers 5 pulls in much of
  torch.distributed for its config classes); `params tiny`'s start-up minus this is lnprobe's own share.

    python benchmarks/startup.py [--runs 5]

To measure another checkout (e.g. the commit before a change), put it first on PYTHONPATH:
`PYTHONPATH=/tmp/clone python benchmarks/startup.py`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Replace `name` in `module` (and in its re-exporting package) by an exit, then run the command line.
STUB = """
import importlib, sys
def stop(*args, **kwargs):
    raise SystemExit(0)
for module in ({module!r}, {package!r}):
    setattr(importlib.import_module(module), {name!r}, stop)
from lnprobe.cli import main
sys.exit(main({args!r}))
"""

# What lnprobe.models.load (and lnprobe.models.presets) import from torch, safetensors and transformers.
TRANSFORMERS = (
    "import torch, safetensors.torch; from transformers import AutoConfig, AutoModelForImageTextToText, "
    "AutoProcessor, PretrainedConfig, CLIPVisionConfig, LlamaConfig, LlavaConfig"
)


def cli(*args: str) -> list[str]:
    """`lnprobe ARGS` through the console script next to this Python (as a user runs it)."""
    script = Path(sys.executable).with_name("lnprobe")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-c", "import sys; from lnprobe.cli import run; run()", *args]


def stubbed(module: str, package: str, name: str, *args: str) -> list[str]:
    code = STUB.format(module=module, package=package, name=name, args=list(args))
    return [sys.executable, "-c", code]


def measure(command: list[str], runs: int, cwd: Path) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system of the child) of `runs` runs, after a warm-up run."""
    walls, cpus = [], []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{command[:3]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        if i:  # the first run warms the file cache
            walls.append(elapsed)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per entry (median reported).")
    args = parser.parse_args()

    import tempfile

    import lnprobe

    entries = {
        "import torch": [sys.executable, "-c", "import torch"],
        "lnprobe --help": cli("--help"),
        "lnprobe train --help": cli("train", "--help"),
        "lnprobe sites --help": cli("sites", "--help"),
        "lnprobe regimes": cli("regimes"),
        "import torch + transformers (models.load's)": [sys.executable, "-c", TRANSFORMERS],
        "start-up of lnprobe params tiny": stubbed(
            "lnprobe.models.load", "lnprobe.models", "resolve_config", "params", "tiny"
        ),
    }
    print(f"lnprobe from {Path(lnprobe.__file__).parent}; python {sys.executable}")
    print(f"{os.cpu_count()} cores; median of {args.runs} runs (after one warm-up run)")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    walls, cpus = {}, {}
    with tempfile.TemporaryDirectory() as tmp:  # commands that write do so under a scratch folder
        for name, command in entries.items():
            w, c = measure(command, args.runs, Path(tmp))
            walls[name], cpus[name] = statistics.median(w), statistics.median(c)
            spread = f"min {min(w):.3f}, max {max(w):.3f}"
            print(f"  {name:44} wall {walls[name]:6.3f} s ({spread}), cpu {cpus[name]:6.3f} s", flush=True)
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    torch_w, torch_c = walls["import torch"], cpus["import torch"]
    print("\n| entry | wall s | / torch | - torch, s | cpu s | / torch | - torch, s |")
    print("|---|---|---|---|---|---|---|")
    for name in entries:
        w, c = walls[name], cpus[name]
        print(
            f"| {name} | {w:.3f} | {w / torch_w:.2f} | {w - torch_w:+.3f} "
            f"| {c:.3f} | {c / torch_c:.2f} | {c - torch_c:+.3f} |"
        )
    floor = "import torch + transformers (models.load's)"
    own_w = walls["start-up of lnprobe params tiny"] - walls[floor]
    own_c = cpus["start-up of lnprobe params tiny"] - cpus[floor]
    print(f"\nparams tiny start-up minus {floor}: wall {own_w:+.3f} s, cpu {own_c:+.3f} s")


if __name__ == "__main__":
    main()
