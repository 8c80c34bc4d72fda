"""Massive-activation (sink) tokens: the rule by hand, and planted sinks found, left out and recorded."""

import pytest
import torch

from lnprobe.capture import Capture, SinkLog, SinkRule, select_sites
from lnprobe.capture.sinks import find_sinks, token_norms
from lnprobe.errors import InputError
from lnprobe.models.sites import resolve_sites
from tests.conftest import every_other, image_batch, plant_sink


def test_the_rule_by_hand():
    """Massive: norm > factor x the lower median of the example's real tokens, at any site."""
    real = torch.tensor([[True] * 5, [True, True, True, False, False]])
    norms = {
        "layer.0": torch.tensor([[101.0, 5, 6, 4, 5], [3.0, 2, 1, 999, 999]]),  # padding never counts
        "layer.1": torch.tensor([[4.0, 5, 6, 4, 5], [3.0, 2, 59, 1, 1]]),  # median of [3, 2, 59] is 3
    }
    found = find_sinks(norms, real, factor=20.0)
    assert found.mask.tolist() == [[True, False, False, False, False], [False, False, False, False, False]]
    assert found.where == {"layer.0": [(0, 0, 101.0, 5.0)]}  # 100 would not be (> 20 x 5)
    found = find_sinks(norms, real, factor=19.0)  # 59 > 19 x 3 (not > 20 x 3)
    assert found.mask[1].tolist() == [False, False, True, False, False]
    assert found.tokens() == [
        {"row": 0, "position": 0, "sites": {"layer.0": {"norm": 101.0, "median": 5.0}}},
        {"row": 1, "position": 2, "sites": {"layer.1": {"norm": 59.0, "median": 3.0}}},
    ]
    # image tokens are judged among image tokens: a modality at another scale is not a sink
    image = torch.tensor([[False] * 4 + [True] * 2])
    scaled = {"layer.0": torch.tensor([[1.0, 1, 1, 1, 50, 2000]])}
    every = torch.ones(1, 6, dtype=torch.bool)
    assert find_sinks(scaled, every, 20.0).mask[0].tolist() == [False] * 4 + [True] * 2  # median 1
    by_kind = find_sinks(scaled, every, 20.0, image)  # image median 50: only 2000 > 20 x 50
    assert by_kind.where == {"layer.0": [(0, 5, 2000.0, 50.0)]}
    half = token_norms(torch.full((1, 1, 576), 2000.0, dtype=torch.float16))  # squares overflow float16
    assert half.dtype == torch.float32 and half.item() == pytest.approx(2000.0 * 576**0.5)
    log = SinkLog(SinkRule(19.0))
    log.add(found, examples=[7, 3], model="a")
    saved = log.to_json()
    assert saved["count"] == 2 and saved["excluded"] and "19 x the median" in saved["rule"]
    assert [(t["model"], t["example"], t["position"]) for t in saved["tokens"]] == [("a", 7, 0), ("a", 3, 2)]


@pytest.fixture
def planted(tiny):
    """The tiny LLaVA (fresh per test) with a massive activation added to the last layer's output at each
    first token."""
    model, processor = tiny
    last = resolve_sites(model).num_layers - 1
    plant_sink(model, [last])
    return model, processor, last


def test_a_planted_sink_is_found_where_planted_and_left_out(tiny, planted):
    """Planted at the last layer's output only, so every other row is the unplanted model's: the rows
    that come out are exactly the clean model's without each example's first token."""
    model, processor, last = planted
    batch = image_batch(processor, n=3)
    sites = select_sites(resolve_sites(model), ["layer.*"])
    capture = Capture(model, sites, "all", sinks=SinkRule())
    rows = capture.run(batch)
    first = batch["attention_mask"].int().argmax(1)
    expected = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
    expected[torch.arange(3), first] = True
    assert torch.equal(capture.sinks.mask, expected)
    assert set(capture.sinks.where) == {f"layer.{last}"}  # massive only where it was planted
    for _, _, norm, median in capture.sinks.where[f"layer.{last}"]:
        assert norm > 20 * median
    clean = {}
    with torch.no_grad():
        hooks = [
            model.get_submodule(s.module).register_forward_hook(
                lambda m, a, o, n=s.name: clean.setdefault(n, o[0] if isinstance(o, tuple) else o)
            )
            for s in sites[:-1]  # the layers before the planted one are untouched by it
        ]
        model(**{k: v for k, v in batch.items() if k != "labels"})
        for hook in hooks:
            hook.remove()
    keep = batch["attention_mask"].bool() & ~expected
    for name, h in clean.items():
        torch.testing.assert_close(rows[name], h[keep].float(), rtol=0, atol=0)
    assert rows[f"layer.{last}"].shape[0] == int(keep.sum())

    kept = Capture(model, sites, "all", sinks=SinkRule(exclude=False))
    every = kept.run(batch)
    assert torch.equal(kept.sinks.mask, expected)  # still found and recorded
    assert every["layer.0"].shape[0] == int(batch["attention_mask"].sum())
    assert Capture(model, sites, "all").run(batch)["layer.0"].shape[0] == every["layer.0"].shape[0]


def test_pooled_selections_pool_over_the_kept_tokens(planted):
    model, processor, last = planted
    batch = image_batch(processor, n=2)
    sites = select_sites(resolve_sites(model), [f"layer.{last}"])
    every = Capture(model, sites, "all", sinks=SinkRule(exclude=False))
    rows = every.run(batch)[f"layer.{last}"]
    keep = batch["attention_mask"].bool() & ~every.sinks.mask
    per_example = keep[batch["attention_mask"].bool()].split(batch["attention_mask"].sum(1).tolist())
    parts = rows.split(batch["attention_mask"].sum(1).tolist())
    mean = Capture(model, sites, "mean", sinks=SinkRule()).run(batch)[f"layer.{last}"]
    for i, (part, k) in enumerate(zip(parts, per_example, strict=True)):
        torch.testing.assert_close(mean[i], part[k].mean(0), rtol=1e-5, atol=1e-5)


def test_a_rule_that_leaves_nothing_is_one_line(tiny):
    """Half the image tokens massive at layer 1, the other half (1,000x larger) from layer 2 on: every
    image token is massive at some site, so an image-token selection has nothing left."""
    model, processor = tiny
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    plant_sink(model, [1], every_other(image_id, 0), scale=1e3)
    plant_sink(model, [2], every_other(image_id, 1), scale=1e6)
    sites = select_sites(resolve_sites(model), ["layer.*"])
    capture = Capture(model, sites, "image", image_id, sinks=SinkRule())
    with pytest.raises(InputError, match="excludes every one of the minibatch's 32 selected tokens") as info:
        capture.run(image_batch(processor, n=2))
    assert "\n" not in str(info.value) and "--keep-sink-tokens" in str(info.value)
    kept = Capture(model, sites, "image", image_id, sinks=SinkRule(exclude=False))
    assert kept.run(image_batch(processor, n=2))["layer.1"].shape[0] == 32
    assert kept.sinks.mask.sum() == 32
