"""The probes: one package per probe (`similarity`, `gradvar`, `lnshift`, `patch`, ...), each registered in
`PROBES` with its config class and runner, all reading the same seeded inputs
(`lnprobe.probes.inputs.ProbeInputs`), except `forgetting`, which scores plain text.

The similarity maths is also re-exported here (loaded on first use, so importing this package is cheap):
`linear_cka`, `rbf_cka`, `cosine_similarity`, `random_baseline`, `METRICS`, `MinibatchCKA`, `cka_matrix`,
`grams`, `hsic_matrix`, `off_diagonal_mean`.
"""

from __future__ import annotations

from lnprobe.lazy import lazy_exports
from lnprobe.probes import (  # noqa: F401 (registers)
    attention,
    forgetting,
    gradvar,
    linprobe,
    lnshift,
    patch,
    similarity,
)
from lnprobe.probes.inputs import ProbeInputs
from lnprobe.probes.registry import PROBES, Probe, ProbeResult

_LAZY = {
    "METRICS": "similarity.metrics",
    "Metric": "similarity.metrics",
    "linear_cka": "similarity.metrics",
    "rbf_cka": "similarity.metrics",
    "cosine_similarity": "similarity.metrics",
    "random_baseline": "similarity.metrics",
    "MinibatchCKA": "similarity.stats",
    "MinibatchCosine": "similarity.stats",
    "cka_matrix": "similarity.stats",
    "grams": "similarity.stats",
    "hsic_matrix": "similarity.stats",
    "off_diagonal_mean": "similarity.stats",
}

__all__ = ["PROBES", "Probe", "ProbeInputs", "ProbeResult", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
