"""Export an `ln` / `ln-simp` delta checkpoint as a PEFT LN-tuning adapter, so
`PeftModel.from_pretrained(base, adapter)` gives the tuned model (identical logits) without lnprobe.

For a base with the linear connector, build the base through `lnprobe.models.load()` first (plain
transformers adds a random second projector layer, see `lnprobe.models.connector`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.models.delta import load_delta_tensors, read_delta
from lnprobe.models.hf import quiet_transformers
from lnprobe.models.load import base_of, load
from lnprobe.regimes import RegimeOptions, apply_regime

EXPORTABLE = ("ln", "ln-simp")


def export_peft(delta_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    from peft import LNTuningConfig, get_peft_model

    info = read_delta(delta_dir)
    output = Output(Path(out), "export", force=overwrite, inputs=(str(delta_dir), info.base), flag="--peft")
    output.check()
    if info.regime not in EXPORTABLE:
        raise InputError(
            f"{delta_dir}: regime {info.regime!r} has no PEFT LN-tuning form (only {EXPORTABLE})"
        )
    base = load(base_of(str(delta_dir)))
    applied = apply_regime(base.model, info.regime, RegimeOptions(**info.regime_options))
    tensors = load_delta_tensors(delta_dir, info, set(applied.trainable))
    sites = applied.sites
    targets = list(sites.lm_norms())
    if info.regime == "ln":
        targets += [sites.connector, sites.embed_tokens, sites.lm_head]
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(applied.model, LNTuningConfig(target_modules=targets))
    params = dict(peft_model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            module = next(t for t in targets if name.startswith(t + "."))
            params[f"base_model.model.{module}.ln_tuning_layers.default.{name[len(module) + 1 :]}"].copy_(
                tensor
            )
    peft_model.peft_config["default"].base_model_name_or_path = base.spec
    with output.build() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT notes that targeted embeddings are saved too
        peft_model.save_pretrained(tmp)
    return Path(out)
