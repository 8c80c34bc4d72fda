"""The probes: one package per probe (`similarity`, `gradvar`, `lnshift`), each registered in `PROBES` with
its config class and runner, all reading the same seeded inputs (`lnprobe.probes.inputs.ProbeInputs`).

The similarity maths is also re-exported here (loaded on first use, so importing this package is cheap):
`linear_cka`, `rbf_cka`, `cosine_similarity`, `random_baseline`, `METRICS`, `MinibatchCKA`, `cka_matrix`,
`grams`, `hsic_matrix`, `off_diagonal_mean`.
"""

from __future__ import annotations

import importlib

from lnprobe.probes import gradvar, lnshift, similarity  # noqa: F401 (register the probes)
from lnprobe.probes.inputs import ProbeInputs
from lnprobe.probes.registry import PROBES, Probe, ProbeResult

_LAZY = {
    "METRICS": "metrics",
    "Metric": "metrics",
    "linear_cka": "metrics",
    "rbf_cka": "metrics",
    "cosine_similarity": "metrics",
    "random_baseline": "metrics",
    "MinibatchCKA": "stats",
    "MinibatchCosine": "stats",
    "cka_matrix": "stats",
    "grams": "stats",
    "hsic_matrix": "stats",
    "off_diagonal_mean": "stats",
}

__all__ = ["PROBES", "Probe", "ProbeInputs", "ProbeResult", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"lnprobe.probes.similarity.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lnprobe.probes' has no attribute {name!r}")
