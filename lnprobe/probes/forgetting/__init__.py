"""The forgetting probe: what finetuning cost the LLM's text ability.

config.py  ForgettingConfig (BASE, TUNED, the text and how it is cut into windows)
stats.py   per-window next-token loss and accuracy of a model; the paired comparison of two models
run.py     the text (a file or the built-in `python-docs`), its windows, and the runner: BASE then TUNED
"""

from lnprobe.probes.forgetting.config import ForgettingConfig
from lnprobe.probes.registry import PROBES, Probe

PROBES.add(
    "forgetting",
    Probe(
        ForgettingConfig,
        "lnprobe.probes.forgetting.run:run_forgetting",
        "held-out text loss and next-token accuracy, base vs tuned (what tuning cost the LLM)",
    ),
)

__all__ = ["ForgettingConfig"]
