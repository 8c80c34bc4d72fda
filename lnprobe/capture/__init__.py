"""Activation capture (nnsight) at named sites with token selection."""

from lnprobe.capture.capture import Capture, stream
from lnprobe.capture.sites import Site, catalogue, select_sites
from lnprobe.capture.tokens import MODES

__all__ = ["MODES", "Capture", "Site", "catalogue", "select_sites", "stream"]
