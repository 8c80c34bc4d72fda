"""Atom and preset `connector`: the vision-language connector alone (the LLaVA pre-training stage)."""

from lnprobe.regimes.base import ATOMS, REGIMES, Atom, Preset


def _select(model, sites, options):
    return [sites.connector]


ATOMS.add("connector", Atom("connector", "connector", _select, whole_modules=True))
REGIMES.add("connector", Preset("connector", ("connector",), "connector only (connector pre-training stage)"))
