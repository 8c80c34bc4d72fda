"""`connector`: the vision-language connector alone (the LLaVA pre-training stage)."""

from lnprobe.regimes.base import REGIMES, Regime


def _select(model, sites, options):
    return [sites.connector]


REGIMES.add("connector", Regime("connector", "connector only (connector pre-training stage)", _select))
