"""Export a delta checkpoint whose regime selects whole modules only (`ln`, `ln-simp`, or any composition of
the atoms norms, connector, embed and head) as a PEFT LN-tuning adapter, so
`PeftModel.from_pretrained(base, adapter)` gives the tuned model (identical logits) without lnprobe.

For a base with the linear connector, build the base through `lnprobe.models.load()` first (plain
transformers adds a random second projector layer, see `lnprobe.models.connector`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from lnprobe.checkpoints.delta import load_delta_tensors, read_delta
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.models.hf import quiet_transformers
from lnprobe.models.load import base_of, load
from lnprobe.regimes import ATOMS, RegimeOptions, apply_regime, resolve_regime


def export_peft(delta_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    from peft import LNTuningConfig, get_peft_model

    info = read_delta(delta_dir)
    output = Output(Path(out), "export", force=overwrite, inputs=(str(delta_dir), info.base), flag="--peft")
    output.check()
    regime = resolve_regime(info.regime)
    if not regime.peft_ln_tuning:
        whole = "+".join(a for a in ATOMS.names() if ATOMS.get(a).whole_modules)
        raise InputError(
            f"{delta_dir}: regime {info.regime!r} has no PEFT LN-tuning form (only compositions of {whole})"
        )
    base = load(base_of(str(delta_dir)))
    applied = apply_regime(base.model, info.regime, RegimeOptions(**info.regime_options))
    tensors = load_delta_tensors(delta_dir, info, set(applied.trainable))
    sites = applied.sites
    targets = regime.select(applied.model, sites, applied.options)
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
