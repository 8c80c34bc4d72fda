"""`full`: the whole LLM and the connector (the vision tower stays frozen), as in LLaVA finetuning."""

from lnprobe.regimes.base import REGIMES, Regime


def _select(model, sites, options):
    return [sites.language_model, sites.embed_tokens, sites.lm_head, sites.connector]


REGIMES.add("full", Regime("full", "LLM + connector (full finetune; vision tower frozen)", _select))
