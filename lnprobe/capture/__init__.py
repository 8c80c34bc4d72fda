"""Activation capture (nnsight) at named sites with token selection."""

from lnprobe.capture.capture import Capture, load_activations, stream
from lnprobe.capture.sinks import SinkLog, SinkRule
from lnprobe.capture.sites import Site, catalogue, select_sites
from lnprobe.capture.tokens import MODES

__all__ = [
    "MODES",
    "Capture",
    "SinkLog",
    "SinkRule",
    "Site",
    "catalogue",
    "load_activations",
    "select_sites",
    "stream",
]
