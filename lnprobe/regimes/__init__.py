"""Training regimes: atoms (one module each, registered in `ATOMS` on import) and presets (named
compositions, registered in `REGIMES` in the paper's table order). `apply_regime(model, name)` applies a
preset, an atom or a composition `a+b+c`; `resolve_regime(name)` resolves one without a model."""

from lnprobe.regimes import norms, embed, head  # noqa: F401, I001  (atoms only)
from lnprobe.regimes import full, lora, attn_qv, attn_mlp, ln, ln_simp, connector  # noqa: F401, I001
from lnprobe.regimes.base import (
    ATOMS,
    REGIMES,
    Applied,
    Atom,
    Preset,
    Regime,
    RegimeOptions,
    apply_regime,
    params_under,
    resolve_regime,
)

__all__ = [
    "ATOMS",
    "REGIMES",
    "Applied",
    "Atom",
    "Preset",
    "Regime",
    "RegimeOptions",
    "apply_regime",
    "params_under",
    "resolve_regime",
]
