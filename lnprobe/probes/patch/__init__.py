"""The norm-patching probe (issue 18 item 1): which norms carry the adaptation.

config.py  PatchConfig (base + tuned + ProbeInputs + bootstrap options)
stats.py   recovered / lost fractions with paired percentile-bootstrap intervals over examples
run.py     the runner: one model in memory, norm parameters swapped in place, per-example losses
"""

from lnprobe.probes.patch.config import PatchConfig
from lnprobe.probes.registry import PROBES, Probe

PROBES.add(
    "patch",
    Probe(
        PatchConfig,
        "lnprobe.probes.patch.run:run_patch",
        "which norms carry the adaptation: tuned norms patched into the base and back",
    ),
)

__all__ = ["PatchConfig"]
