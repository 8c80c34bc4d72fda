"""Start-up cost of the command line, side by side with the torch import it is judged against.

Each entry is the wall time, and the CPU time (user + system; close to the wall time on idle cores, and
steadier when others load the machine), of a fresh process: the median of --runs rounds, each running every
entry once, after one discarded warm-up round:

* `import torch`: the floor every command that does real work pays;
* `lnprobe --help`, `lnprobe train --help`, `lnprobe sites --help`: should import neither torch nor
  transformers;
* `lnprobe regimes`: a real command whose work (two tables) is negligible, so its wall time is its start-up;
* start-up of `lnprobe params tiny`: everything up to the command's work (Python, the command line, argument
  parsing, the command's own imports), measured by running the command with its first work call
  (`resolve_config`) replaced by an immediate exit;
* `import torch + transformers (models.load's)`: torch and the transformers classes `lnprobe.models.load`
  imports, the floor of every command that builds a model (transformers 5 pulls in much of
  torch.distributed for its config classes); `params tiny`'s start-up minus this is lnprobe's own share;
* the same share timed inside one process (torch and those transformers classes imported first, then the
  clock runs from there to the work call): the command line, argument parsing and lnprobe's own modules.

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
# `{before}` runs first; the time from there to the work call is printed as "IN-PROCESS wall cpu".
STUB = """
import importlib, sys, time
{before}
t0, c0 = time.perf_counter(), time.process_time()
def stop(*args, **kwargs):
    print("IN-PROCESS", time.perf_counter() - t0, time.process_time() - c0)
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

OWN = "params tiny start-up after torch + transformers (in-process)"


def cli(*args: str) -> list[str]:
    """`lnprobe ARGS` through the console script next to this Python (as a user runs it)."""
    script = Path(sys.executable).with_name("lnprobe")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-c", "import sys; from lnprobe.cli import run; run()", *args]


def stubbed(module: str, package: str, name: str, *args: str, before: str = "") -> list[str]:
    code = STUB.format(module=module, package=package, name=name, args=list(args), before=before)
    return [sys.executable, "-c", code]


def run_once(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("IN-PROCESS "):  # a stub that timed itself: its own figures
            _, wall, cpu = line.split()
            return float(wall), float(cpu)
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Timed rounds (median reported).")
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
        OWN: stubbed(
            "lnprobe.models.load", "lnprobe.models", "resolve_config", "params", "tiny", before=TRANSFORMERS
        ),
    }
    print(f"lnprobe from {Path(lnprobe.__file__).parent}; python {sys.executable}")
    print(f"{os.cpu_count()} cores; median of {args.runs} rounds (after one warm-up round)")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in entries}
    with tempfile.TemporaryDirectory() as tmp:  # commands that write do so under a scratch folder
        for i in range(args.runs + 1):  # round robin, so a change in the machine's load hits every entry
            for name, command in entries.items():
                timing = run_once(command, Path(tmp))
                if i:  # the first round warms the file cache
                    runs[name].append(timing)
    walls = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
    cpus = {name: statistics.median(c for _, c in r) for name, r in runs.items()}
    for name, r in runs.items():
        spread = f"min {min(w for w, _ in r):.3f}, max {max(w for w, _ in r):.3f}"
        print(f"  {name:44} wall {walls[name]:6.3f} s ({spread}), cpu {cpus[name]:6.3f} s")
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
    print(f"lnprobe's own share, timed in-process ({OWN}): wall {walls[OWN]:.3f} s, cpu {cpus[OWN]:.3f} s")


if __name__ == "__main__":
    main()
