"""What the probe commands share: a model loaded with its multi-modal processor, and the seeded batches of
a probe config (fields data, n, batch_size, seed, template, image_folder, max_length)."""

from __future__ import annotations

from lnprobe.data.llava import seeded_batches
from lnprobe.errors import InputError
from lnprobe.models import load


def load_multimodal(spec: str, device: str = "cpu", **options):
    """`load(spec)`, in eval mode; InputError if it has no multi-modal processor (LLaVA data needs one).
    `options` go to `load` (dtype, online, ...)."""
    loaded = load(spec, device=device, **options)
    if loaded.processor is None or not hasattr(loaded.processor, "tokenizer"):
        raise InputError(f"{spec}: needs a multi-modal processor (LLaVA-format data)")
    loaded.model.eval()
    return loaded


def config_batches(cfg, processor) -> list[dict]:
    return seeded_batches(
        cfg.data, processor, cfg.n, cfg.batch_size, cfg.seed, cfg.template, cfg.image_folder, cfg.max_length
    )
