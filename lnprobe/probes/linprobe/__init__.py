"""Linear probes and PCA views (issue 18 item 4): what a linear read-out finds in each layer's residual
stream before and after its input norm, per model.

config.py  LinprobeConfig (models by label + ProbeInputs + folds)
fit.py     cross-validated logistic regression (grouped folds, Wilson interval), balanced rows, 2-D PCA
run.py     the runner: one model in memory, activations captured at every input norm's input and output
"""

from lnprobe.probes.linprobe.config import LinprobeConfig
from lnprobe.probes.registry import PROBES, Probe

PROBES.add(
    "linprobe",
    Probe(
        LinprobeConfig,
        "lnprobe.probes.linprobe.run:run_linprobe",
        "linear probes (image vs text, image attributes) and PCA views per layer, before and after each norm",
    ),
)

__all__ = ["LinprobeConfig"]
