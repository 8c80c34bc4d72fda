"""Activation capture (nnsight) at named sites with token selection."""

from lnprobe.capture.capture import Capture, load_activations, stream
from lnprobe.capture.sites import Site, catalogue, select_sites
from lnprobe.capture.tokens import MODES

__all__ = ["MODES", "Capture", "load_activations", "Site", "catalogue", "select_sites", "stream"]
