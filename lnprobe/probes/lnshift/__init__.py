"""The LayerNorm-shift probe (the paper's mechanism 1: norms as domain adapters).

config.py  LnShiftConfig (ProbeInputs + the base + options)
stats.py   the statistics (weight shift, streaming moments, the image-vs-text modality gap)
run.py     the runner: tuned then base, norm inputs and outputs by modality
"""

from lnprobe.probes.lnshift.config import LnShiftConfig
from lnprobe.probes.registry import PROBES, Probe

PROBES.add(
    "lnshift",
    Probe(
        LnShiftConfig,
        "lnprobe.probes.lnshift.run:run_lnshift",
        "how tuning moved the norms; image-vs-text gap around each norm",
    ),
)

__all__ = ["LnShiftConfig"]
