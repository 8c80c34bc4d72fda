"""Loading an lnprobe delta: the base through `models.load`, the delta's regime re-applied to it, the
delta's tensors copied in (checked to be exactly the regime's trainable set). `lnprobe.models.load(spec)`
calls `load_delta` for a delta directory through the registered format (`lnprobe.checkpoints`)."""

from __future__ import annotations

from pathlib import Path

import torch

from lnprobe.checkpoints import delta as delta_io
from lnprobe.errors import InputError
from lnprobe.models.load import Loaded, load
from lnprobe.regimes import RegimeOptions, apply_regime


def check_base(spec: str, info: delta_io.DeltaInfo, base_spec: str) -> None:
    """Refuse a base whose weights differ from the one the delta was trained on."""
    if info.base_fingerprint and Path(base_spec).is_dir():
        found = delta_io.fingerprint(base_spec)
        if found != info.base_fingerprint:
            raise InputError(
                f"{spec}: base {base_spec!r} differs from the one the delta was trained on "
                f"(fingerprint {found} != {info.base_fingerprint})"
            )


def load_delta(spec, base_spec, dtype, device, merge, online, trust_remote_code) -> Loaded:
    """The delta at `spec` applied to `base_spec` (both resolved by `models.load`); LoRA deltas are merged
    into plain modules unless `merge=False`."""
    info = delta_io.read_delta(spec)
    check_base(spec, info, base_spec)
    loaded = load(base_spec, dtype=dtype, device=device, online=online, trust_remote_code=trust_remote_code)
    try:
        options = RegimeOptions(**info.regime_options)
    except TypeError as exc:
        raise InputError(f"{spec}: bad regime_options ({exc})") from None
    applied = apply_regime(loaded.model, info.regime, options)
    tensors = delta_io.load_delta_tensors(spec, info, set(applied.trainable))
    params = dict(applied.model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
    model = applied.model
    if merge and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.requires_grad_(False)
    return Loaded(model.eval(), loaded.processor, spec, "delta", base=base_spec, regime=info.regime)
