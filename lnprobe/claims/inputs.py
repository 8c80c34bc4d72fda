"""The claims' one set of probe inputs (below the runner and the causal evidence, which both read it)."""

from __future__ import annotations

from lnprobe.claims.config import ClaimsConfig
from lnprobe.probes import ProbeInputs


def probe_inputs(cfg: ClaimsConfig) -> ProbeInputs:
    """The one set of seeded inputs every probe of the claims reads."""
    return ProbeInputs(
        data=cfg.data, n=cfg.n, batch_size=cfg.batch_size, template=cfg.template,
        image_folder=cfg.image_folder, max_length=cfg.max_length, seed=cfg.seed, device=cfg.device,
        progress=cfg.progress,
    )  # fmt: skip
