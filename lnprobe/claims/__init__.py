"""`lnprobe claims`: does each of the paper's mechanism claims hold for a set of checkpoints?

Given a base model, an LN-tuned model and a fully-finetuned model (optionally more: LoRA, LN-simp) and one
dataset, it runs the probes on identical seeded inputs and judges:

1. cross-layer similarity: the LN-tuned model's mean off-diagonal layer x layer linear CKA (and cosine) is
   lower than the fully-finetuned model's (the base as control);
2. gradient variance: the LN-tuned model's norm-weight gradient variance tr(Σ)/p is lower than the
   fully-finetuned model's (from the training runs' gradient traces when both have at least three samples,
   else offline per-example gradients), compared on a log scale;
3. domain adaptation: after the norms, the image-vs-text token gap is smaller in the LN-tuned model than in
   the base, layer by layer (sign test over the norm-output sites).

Verdict rules: `lnprobe.claims.verdicts`. Outputs: claims.json, report.md, report.html (figures embedded),
and each probe's own outputs under probes/.
"""

from __future__ import annotations

from lnprobe.claims.config import ClaimsConfig
from lnprobe.lazy import lazy_exports

_LAZY = {"run_claims": "run", "probe_inputs": "inputs"}  # torch: loaded on first use
__all__ = ["ClaimsConfig", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
