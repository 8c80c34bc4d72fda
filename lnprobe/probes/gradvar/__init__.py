"""The gradient-variance probe (the paper's mechanism 3).

config.py  GradVarConfig (ProbeInputs + sampling unit + parameter groups)
stats.py   the statistics (streaming Welford per group, tr(Σ)/p, noise scale, jackknife intervals),
           shared with the training-time callback (`lnprobe.train.gradvar_callback`)
run.py     the runner on a checkpoint: per-example or per-batch gradients, nothing updated
"""

from lnprobe.probes.gradvar.config import GradVarConfig
from lnprobe.probes.registry import PROBES, Probe

PROBES.add(
    "gradvar",
    Probe(
        GradVarConfig,
        "lnprobe.probes.gradvar.run:run_gradvar",
        "gradient variance per layer and parameter group (nothing updated)",
    ),
)

__all__ = ["GradVarConfig"]
