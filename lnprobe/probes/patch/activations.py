"""Activation patching at norm outputs, by token kind (issue 18 item 2): does the adaptation act through the
image tokens?

For a norm unit u (a layer's input or post-attention norm, or the final norm) and a token kind k (image,
text, both), the base model runs on an example with u's output replaced, at the positions of kind k only,
by the tuned model's output of u on the same example; everything else is the base's. The per-example
answer losses of that run give a recovered fraction exactly as parameter patching does
(`stats.fraction`). The tuned outputs come from one tuned pass per batch; the model is switched between
base and tuned by the same in-place `NormSwap` (one model in memory). Plain forward hooks replace the
module output: nothing else of the forward pass changes, so no tracing graph is needed.

Token kinds: image = the image placeholder positions (input_ids == the image token id), text = every other
real position (attention mask 1), both = all real positions. Padding is never patched.
"""

from __future__ import annotations

import contextlib

import torch

from lnprobe.models.sites import ModelSites
from lnprobe.train.loss import answer_scores

TOKEN_KINDS = ("image", "text", "both")


def unit_modules(sites: ModelSites) -> dict[str, str]:
    """{unit: norm module name}, the units of `norm_units` (`input.i`, `post_attention.i`, `final`)."""
    out = {}
    for i, (a, b) in enumerate(zip(sites.input_norms, sites.post_attention_norms, strict=True)):
        out[f"input.{i}"], out[f"post_attention.{i}"] = a, b
    if sites.final_norm:
        out["final"] = sites.final_norm
    return out


def token_masks(batch: dict, image_token_id: int) -> dict[str, torch.Tensor]:
    """{kind: [b, t] bool}: the positions each token kind patches."""
    real = batch["attention_mask"].bool()
    image = (batch["input_ids"] == image_token_id) & real
    return {"image": image, "text": real & ~image, "both": real}


def _output(out):
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def capture_outputs(model: torch.nn.Module, modules: dict[str, str], batch: dict) -> dict[str, torch.Tensor]:
    """{unit: its module's output on `batch`} from one forward pass."""
    got: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, unit=unit: got.__setitem__(unit, _output(out).detach().clone())
        )
        for unit, name in modules.items()
    ]
    try:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        for h in handles:
            h.remove()
    return got


@contextlib.contextmanager
def replaced(module: torch.nn.Module, value: torch.Tensor, mask: torch.Tensor):
    """`module`'s output replaced by `value` at the `[b, t]` positions of `mask` while inside."""

    def hook(_m, _i, out):
        x = _output(out)
        patched = torch.where(mask[..., None], value.to(x.dtype), x)
        return (patched, *out[1:]) if isinstance(out, tuple) else patched

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def activation_patching(
    model, sites: ModelSites, swap, batches, device: str, stop: set[int], image_token_id: int
) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """{(unit, token kind): (per-example mean answer losses `[n]` float64, answer hits `[n]`)} over
    `batches` (an iterable of batches), the examples in order. Passes: per batch 1 + 3 x units."""
    modules = unit_modules(sites)
    parts: dict[tuple[str, str], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    try:
        for raw in batches:
            batch = {k: v.to(device) for k, v in raw.items()}
            swap.restore()  # the tuned model
            cached = capture_outputs(model, modules, batch)
            swap.set(frozenset())  # the base model
            masks = token_masks(batch, image_token_id)
            for unit, name in modules.items():
                for kind in TOKEN_KINDS:
                    with (
                        replaced(model.get_submodule(name), cached[unit], masks[kind]),
                        torch.inference_mode(),
                    ):
                        sums, counts, hits = answer_scores(model, sites, batch, stop)
                    parts.setdefault((unit, kind), []).append(
                        ((sums.double() / counts.clamp_min(1)).cpu(), hits)
                    )
    finally:
        swap.restore()
    return {k: (torch.cat([p[0] for p in v]), torch.cat([p[1] for p in v])) for k, v in parts.items()}
