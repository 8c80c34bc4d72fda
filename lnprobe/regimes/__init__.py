"""Training regimes, one module each, registered on import (in this order: the paper's table order).
`apply_regime(model, name)` applies one."""

from lnprobe.regimes import full, lora, attn_qv, attn_mlp, ln, ln_simp, connector  # noqa: F401, I001
from lnprobe.regimes.base import REGIMES, Applied, Regime, RegimeOptions, apply_regime, params_under

__all__ = ["REGIMES", "Applied", "Regime", "RegimeOptions", "apply_regime", "params_under"]
