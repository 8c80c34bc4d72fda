"""Activation capture with nnsight on the real HF modules (norms are never folded or rewritten).

`Capture(model, sites, tokens)` wraps the model once in `nnsight.NNsight`; `run(batch)` traces one forward
pass and returns, per site, the selected rows as a float32 CPU tensor `[rows, d]`. Modules are read in the
order they execute (found once with a plain forward), as nnsight requires. Nothing stays registered on the
model between traces. `stream(...)` iterates a dataset in batches with a progress bar, holding one batch of
activations at a time.

With a `SinkRule` (`lnprobe.capture.sinks`), every text-side site's token norms are examined before rows
are selected: a token massive at any of the captured sites is found (`capture.sinks`) and, unless the rule
keeps it, left out of every site's rows. `capture.selected` is then the `[batch, positions]` mask of the
positions whose rows (or pools) came out.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import nnsight
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lnprobe.capture.sinks import SinkRule, Sinks, find_sinks, token_norms
from lnprobe.capture.sites import Site
from lnprobe.capture.tokens import POOLED, image_rows, position_mask, select_rows
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
        self,
        model: nn.Module,
        sites: list[Site],
        tokens: str = "all",
        image_token_id: int | None = None,
        sinks: SinkRule | None = None,
    ):
        self.model, self.sites, self.tokens, self.image_token_id = model, sites, tokens, image_token_id
        self.rule = sinks
        self.sinks: Sinks | None = None  # the last minibatch's massive tokens (None without a rule)
        self.selected: torch.Tensor | None = None  # the last minibatch's selected text positions
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
    def run(self, batch: dict, exclude: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per site, the selected rows `[rows, d]` (float32, CPU). `exclude` `[batch, positions]`: more
        positions to leave out (e.g. another checkpoint's massive tokens)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.order is None:
            self.order = self._execution_order(inputs)
        saved = self._trace(inputs)
        values = [_first(value).detach() for value in saved]
        text = [(s, h) for s, h in zip(self.order, values, strict=True) if s.side == "text"]
        mask = position_mask(batch, self.tokens, self.image_token_id) if text else None
        self.sinks = None
        if mask is not None and self.rule is not None:
            real = batch["attention_mask"].bool()
            norms = {s.name: token_norms(h).to(real.device) for s, h in text}
            image = None if self.image_token_id is None else batch["input_ids"] == self.image_token_id
            self.sinks = find_sinks(norms, real, self.rule.factor, image)
            if self.rule.exclude:
                exclude = self.sinks.mask if exclude is None else exclude.to(real.device) | self.sinks.mask
        if mask is not None and exclude is not None:
            mask = self._without(mask, exclude.to(mask.device))
        self.selected = mask
        rows = {}
        for site, h in zip(self.order, values, strict=True):
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

    def _without(self, mask: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """`mask` less the positions in `drop`; InputError when that leaves the minibatch no selected
        token (or, for pooled selections, an example nothing to pool)."""
        kept = mask & ~drop
        pooled = self.tokens in POOLED
        emptied = (mask.any(1) & ~kept.any(1)).any() if pooled else (mask.any() and not kept.any())
        if emptied:
            what = "an example's tokens" if pooled else f"the minibatch's {int(mask.sum())} selected tokens"
            factor = f"{self.rule.factor:g}" if self.rule is not None else "?"
            raise InputError(
                f"the sink rule (norm > {factor} x the example's median) excludes every one of {what}: "
                "nothing left to compare (--keep-sink-tokens keeps them; a larger --sink-factor flags fewer)"
            )
        return kept

    def positions(self) -> torch.Tensor | None:
        """The flat indices (row x positions + position) of the last minibatch's text rows, in row order;
        None for pooled selections (one row per example)."""
        if self.selected is None or self.tokens in POOLED:
            return None
        return self.selected.flatten().nonzero().squeeze(1).cpu()


def stream(
    capture: Capture,
    batches: Iterable[dict],
    total: int | None = None,
    label: str = "capture",
    progress: bool = True,
    save_to: str | Path | None = None,
    excludes: list[torch.Tensor | None] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Captured rows per batch, with a progress bar. With `save_to`, each batch's rows are also written
    to `save_to/batch-NNNNN.safetensors` (site name → rows) for reuse (`load_activations`). `excludes[b]`:
    positions of batch b to leave out besides the capture's own massive tokens (`Capture.run`)."""
    if save_to is not None:
        Path(save_to).mkdir(parents=True, exist_ok=True)
    items = tracked(batches, progress, label, total=total)
    for b, batch in enumerate(items):
        rows = capture.run(batch, excludes[b] if excludes else None)
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
