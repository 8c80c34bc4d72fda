"""Activation capture with nnsight on the real HF modules (norms are never folded or rewritten).

`Capture(model, sites, tokens)` wraps the model once in `nnsight.NNsight`; `run(batch)` traces one forward
pass and returns, per site, the selected rows as a float32 CPU tensor `[rows, d]`. Modules are read in the
order they execute (found once with a plain forward), as nnsight requires. Nothing stays registered on the
model between traces. `stream(...)` iterates a dataset in batches with a progress bar, holding one batch of
activations at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import nnsight
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lnprobe.capture.sites import Site
from lnprobe.capture.tokens import image_rows, position_mask, select_rows
from lnprobe.errors import InputError
from lnprobe.progress import tracked


def _envoy(root, name: str):
    """The nnsight envoy of a module by its dotted name. nnsight serves `.output` / `.input` on every
    envoy, so a submodule literally named `output` (BERT) is reached as `E_output`."""
    for part in name.split("."):
        if part.isdigit():
            root = root[int(part)]
        else:
            renamed = f"E_{part}"
            root = (
                getattr(root, renamed)
                if part in ("output", "input") and hasattr(root, renamed)
                else getattr(root, part)
            )
    return root


def _first(value):
    return value[0] if isinstance(value, tuple | list) else value


class Capture:
    def __init__(
        self, model: nn.Module, sites: list[Site], tokens: str = "all", image_token_id: int | None = None
    ):
        self.model, self.sites, self.tokens, self.image_token_id = model, sites, tokens, image_token_id
        with (
            warnings.catch_warnings()
        ):  # nnsight notes that it renames submodules called `output` (see _envoy)
            warnings.filterwarnings("ignore", message=".*submodule named", category=UserWarning)
            self.wrapped = nnsight.NNsight(model)
        self.order: list[Site] | None = None

    def _execution_order(self, inputs: dict) -> list[Site]:
        """Sites sorted by when they happen: a module's input when it starts, its output when it ends."""
        events: list[tuple[str, str]] = []
        hooks = []
        for name in {s.module for s in self.sites}:
            module = self.model.get_submodule(name)
            hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: events.append((n, "input"))))
            hooks.append(module.register_forward_hook(lambda m, a, o, n=name: events.append((n, "output"))))
        try:
            with torch.no_grad():
                self.model(**inputs)
        finally:
            for hook in hooks:
                hook.remove()
        when = {event: i for i, event in reversed(list(enumerate(events)))}
        missing = [s.name for s in self.sites if (s.module, s.port) not in when]
        if missing:
            raise InputError(f"site(s) {', '.join(missing)} did not run on this input (text-only data?)")
        return sorted(self.sites, key=lambda s: when[(s.module, s.port)])

    def _trace(self, inputs: dict) -> list:
        with self.wrapped.trace(**inputs):
            saved = nnsight.save([])
            for site in self.order:
                envoy = _envoy(self.wrapped, site.module)
                saved.append(envoy.input if site.port == "input" else envoy.output)
        return saved

    @torch.no_grad()
    def run(self, batch: dict) -> dict[str, torch.Tensor]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.order is None:
            self.order = self._execution_order(inputs)
        saved = self._trace(inputs)
        mask = (
            position_mask(batch, self.tokens, self.image_token_id)
            if any(s.side == "text" for s in self.sites)
            else None
        )
        rows = {}
        for site, value in zip(self.order, saved, strict=True):
            h = _first(value).detach()
            r = select_rows(h, mask, self.tokens) if site.side == "text" else image_rows(h, self.tokens)
            if r.shape[0] == 0:
                raise InputError(f"token selection {self.tokens!r} leaves no rows at site {site.name}")
            rows[site.name] = r.float().cpu()
        # one reduction per site (a NaN or inf anywhere makes the sum non-finite); name the first bad site
        sums = torch.stack([r.sum(dtype=torch.float64) for r in rows.values()])
        if not torch.isfinite(sums).all():
            bad = next(s for s in self.order if not torch.isfinite(rows[s.name]).all())
            raise InputError(f"non-finite activations at site {bad.name} ({bad.module})")
        return {s.name: rows[s.name] for s in self.sites}


def stream(
    capture: Capture,
    batches: Iterable[dict],
    total: int | None = None,
    label: str = "capture",
    progress: bool = True,
    save_to: str | Path | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Captured rows per batch, with a progress bar. With `save_to`, each batch's rows are also written
    to `save_to/batch-NNNNN.safetensors` (site name → rows) for reuse (`load_activations`)."""
    if save_to is not None:
        Path(save_to).mkdir(parents=True, exist_ok=True)
    items = tracked(batches, progress, label, total=total)
    for b, batch in enumerate(items):
        rows = capture.run(batch)
        if save_to is not None:
            save_file(
                {k: v.contiguous() for k, v in rows.items()},
                str(Path(save_to) / f"batch-{b:05d}.safetensors"),
            )
        yield rows


def load_activations(folder: str | Path) -> Iterator[dict[str, torch.Tensor]]:
    """The batches written by `stream(..., save_to=folder)`, in order."""
    files = sorted(Path(folder).glob("batch-*.safetensors"))
    if not files:
        raise InputError(f"{folder}: no saved activation shards (batch-*.safetensors)")
    for path in files:
        yield load_file(str(path))
