"""The attention-to-image probe (issue 18 item 5): per decoder layer and head, the share of text tokens'
attention mass that lands on image tokens, for several models (base, ln, full, ...) and their differences.

config.py  AttentionConfig (LABEL=PATH models + ProbeInputs + bootstrap options)
stats.py   per-example shares from attention weights; means with percentile-bootstrap intervals
run.py     the runner: one model in memory at a time, eager attention, one hook per attention module
"""

from lnprobe.probes.attention.config import AttentionConfig
from lnprobe.probes.registry import PROBES, Probe

PROBES.add(
    "attention",
    Probe(
        AttentionConfig,
        "lnprobe.probes.attention.run:run_attention",
        "share of text tokens' attention on image tokens, per layer and head, across models",
    ),
)

__all__ = ["AttentionConfig"]
