"""nnsight capture: the same numbers as plain forward hooks, token selection, ordering, hygiene."""

import gc
import warnings

import pytest
import torch

from lnprobe.capture import Capture, catalogue, select_sites
from lnprobe.errors import InputError
from lnprobe.models import resolve_sites
from tests.conftest import image_batch

IMG = "<image>"


def make(tiny, patterns, tokens="all"):
    model, processor = tiny
    sites = select_sites(resolve_sites(model), patterns)
    return Capture(model, sites, tokens, processor.tokenizer.convert_tokens_to_ids(IMG))


def hooked(model, module_names, batch, port="output"):
    """Reference: plain register_forward_hook capture."""
    got = {}
    hooks = []
    for name in module_names:

        def hook(m, args, out, name=name):
            got[name] = (args[0] if port == "input" else (out[0] if isinstance(out, tuple) else out)).detach()

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"})
    for h in hooks:
        h.remove()
    return got


def test_every_site_captures_what_a_forward_hook_sees(tiny):
    model, processor = tiny
    batch = image_batch(processor, n=2)
    cap = make(tiny, ["*"])  # every family, including norm inputs: the order must be right
    rows = cap.run(batch)
    mask = batch["attention_mask"].bool()
    for site in cap.sites:
        ref = hooked(model, [site.module], batch, site.port)[site.module]
        expected = ref[mask] if site.side == "text" else ref.reshape(-1, ref.shape[-1])
        torch.testing.assert_close(rows[site.name], expected.float(), rtol=0, atol=0)
    assert len(rows) == len(catalogue(resolve_sites(model)))


def test_token_selection(tiny):
    model, processor = tiny
    batch = image_batch(processor, n=3)
    batch["attention_mask"][0, -3:] = 0  # padding in the first example
    batch["labels"][:, :-2] = -100  # two answer tokens per example
    image_id = processor.tokenizer.convert_tokens_to_ids(IMG)
    real = batch["attention_mask"].bool()
    counts = {
        mode: make(tiny, ["layer.0"], mode).run(batch)["layer.0"].shape[0]
        for mode in ("all", "image", "text", "answer", "mean", "last")
    }
    n_image = int((batch["input_ids"][real] == image_id).sum())
    assert counts["all"] == int(real.sum()) == counts["image"] + counts["text"]
    assert counts["image"] == n_image == 3 * 16
    assert counts["answer"] == int((real & (batch["labels"] != -100)).sum())
    assert counts["mean"] == counts["last"] == 3
    ref = hooked(model, [resolve_sites(model).layers[0]], batch)
    h = next(iter(ref.values()))
    mean0 = h[0][real[0]].mean(0)
    torch.testing.assert_close(make(tiny, ["layer.0"], "mean").run(batch)["layer.0"][0], mean0)
    last0 = h[0][int(real[0].nonzero().max())]
    torch.testing.assert_close(make(tiny, ["layer.0"], "last").run(batch)["layer.0"][0], last0)


def test_bad_selections(tiny):
    batch = image_batch(tiny[1], n=2)
    with pytest.raises(InputError, match="site pattern 'layers.*' matches nothing"):
        make(tiny, ["layers.*"])
    with pytest.raises(InputError, match="does not apply to image-side sites"):
        make(tiny, ["connector"], "text").run(batch)
    text_only = {k: v for k, v in tiny[1](text=["USER: hi ASSISTANT: yo"] * 2, return_tensors="pt").items()}
    with pytest.raises(InputError, match="'image' leaves no rows at site layer.0"):
        make(tiny, ["layer.0"], "image").run(text_only)
    with pytest.raises(InputError, match="connector did not run"):
        make(tiny, ["connector"]).run(text_only)


def test_nan_activations_name_the_site(tiny):
    model, processor = tiny
    with torch.no_grad():
        model.get_submodule(resolve_sites(model).mlp[2]).down_proj.weight.fill_(float("nan"))
    with pytest.raises(InputError, match="non-finite activations at site layer.2"):
        make(tiny, ["layer.*"]).run(image_batch(processor))


def live() -> tuple[int, int, int]:
    """Tensors alive (count, bytes of their distinct storages) and objects the collector tracks: counted,
    not a resident-memory measurement (which varies with the allocator and other processes)."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some modules warn when isinstance() probes their lazy attributes
        objects = gc.get_objects()
        tensors = [o for o in objects if isinstance(o, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return len(tensors), sum(storages.values()), len(objects)


def test_no_hooks_left_and_nothing_kept_over_many_traces(tiny):
    """Many traces leave the hooks as they were and keep no tensor or object per trace; a planted leak
    (the results kept) is seen by the same count."""
    model, processor = tiny
    batch = image_batch(processor, n=8)
    with torch.no_grad():  # transformers installs its own output-recording hooks on a first forward
        model(**{k: v for k, v in batch.items() if k != "labels"})

    def hooks():
        return {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()}

    registered = hooks()
    cap = make(tiny, ["layer.*", "input_norm.*.out"])
    for _ in range(5):  # warm up nnsight's caches
        cap.run(batch)
    warm = live()
    for _ in range(20):
        cap.run(batch)
    after_20 = live()
    for _ in range(40):
        cap.run(batch)
    after_60 = live()
    assert after_20[:2] == warm[:2] and after_60[:2] == warm[:2]  # same tensors, same bytes
    assert after_60[2] - after_20[2] < 40  # fewer objects than traces: nothing kept per trace
    assert hooks() == registered  # capture leaves nothing registered
    kept = [cap.run(batch) for _ in range(3)]  # the planted leak
    leaked = live()
    assert leaked[0] > warm[0] and leaked[1] > warm[1] and kept


def test_text_tokens_of_a_text_only_model_are_all_its_tokens():
    from lnprobe.capture.tokens import position_mask

    batch = {
        "input_ids": torch.tensor([[5, 6, 7], [5, 6, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
    }
    assert torch.equal(position_mask(batch, "text", None), batch["attention_mask"].bool())
    assert torch.equal(
        position_mask(batch, "text", 6), torch.tensor([[True, False, True], [True, False, False]])
    )
    with pytest.raises(InputError, match="'image' needs a model with an image token"):
        position_mask(batch, "image", None)
