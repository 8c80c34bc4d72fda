"""Training callbacks: how probes (e.g. gradient statistics) see a run while it trains.

Every method is optional. A callback that sets `wants_micro_grads = True` (or overrides `micro_grads_at(step)`
to ask only on some steps) sees, in `on_micro_batch`, each micro-batch's own parameter gradients in
`param.grad` (the trainer accumulates them aside and restores the sum before the optimizer step); otherwise
`param.grad` holds the running sum of the step so far.
"""

from __future__ import annotations

from typing import Any


class Callback:
    wants_micro_grads: bool = False

    def micro_grads_at(self, step: int) -> bool:
        """Whether `on_micro_batch` of optimizer step `step` (0-based) needs per-micro-batch gradients."""
        return self.wants_micro_grads

    def on_train_begin(self, trainer: Any) -> None: ...

    def on_micro_batch(self, trainer: Any, step: int, micro: int, batch: dict) -> None: ...

    def on_before_optimizer_step(self, trainer: Any, step: int) -> None: ...

    def on_step_end(self, trainer: Any, step: int, metrics: dict) -> None: ...

    def on_train_end(self, trainer: Any) -> None: ...
