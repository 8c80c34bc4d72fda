"""One seeded batcher for every probe: the same `ProbeInputs` give every probe the same examples, none
dropped (a trailing minibatch too small for CKA joins the one before)."""

import pytest

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.errors import InputError
from lnprobe.probes import PROBES, ProbeInputs
from lnprobe.probes.gradvar import GradVarConfig
from lnprobe.probes.inputs import example_chunks
from lnprobe.probes.lnshift import LnShiftConfig
from lnprobe.probes.similarity import SimilarityConfig


@pytest.mark.parametrize("n, batch_size", [(10, 4), (9, 4), (8, 4), (5, 4), (3, 8), (13, 3)])
def test_chunks_keep_every_example(n, batch_size):
    inputs = ProbeInputs(data="unused", n=n, batch_size=batch_size)
    plain = example_chunks(30, inputs)
    merged = example_chunks(30, inputs, min_last=4)
    flat = [i for c in plain for i in c]
    assert len(flat) == n and len(set(flat)) == n  # the first n of the seeded order, each once
    assert [i for c in merged for i in c] == flat  # the same examples in the same order
    assert all(len(c) == batch_size for c in plain[:-1])
    assert len(merged) == 1 or all(len(c) >= 4 for c in merged) or batch_size < 4
    assert example_chunks(30, ProbeInputs(data="unused", n=n, batch_size=batch_size, seed=1)) != plain


def test_the_seed_orders_and_n_caps_the_examples():
    inputs = ProbeInputs(data="unused", n=50, batch_size=4)
    assert sorted(i for c in example_chunks(12, inputs) for i in c) == list(range(12))


def test_every_probe_sees_the_same_examples(tiny_dir, tmp_path):
    """n = 10 in minibatches of 4 (n % batch_size = 2): similarity used to drop the last two examples."""
    data = write_synth(tmp_path / "data", SynthConfig(n=20, seed=3))
    inputs = ProbeInputs(data=str(data / "instruct.json"), n=10, batch_size=4, progress=False)
    sim = PROBES.get("similarity").run(
        SimilarityConfig(a=tiny_dir, inputs=inputs, out=str(tmp_path / "s"), tokens="mean", bootstrap=20)
    )
    grads = PROBES.get("gradvar").run(
        GradVarConfig(ckpt=tiny_dir, inputs=inputs, out=str(tmp_path / "g"), groups=("norms",))
    )
    shift = PROBES.get("lnshift").run(
        LnShiftConfig(ckpt=tiny_dir, base=tiny_dir, inputs=inputs, out=str(tmp_path / "l"))
    )
    assert sim.examples == grads.samples == 10
    assert sim.minibatches == 2  # 4 + 6: one row per example (`mean`), so the trailing 2 joined
    from lnprobe.models import load
    from lnprobe.probes.inputs import probe_batches

    tokens = sum(int(b["attention_mask"].sum()) for b in probe_batches(inputs, load(tiny_dir).processor))
    site = next(iter(shift.activations["base"]))
    assert sum(m["tokens"] for m in shift.activations["base"][site].values()) == tokens  # image + text
    assert type(sim).read(tmp_path / "s") == sim  # the typed result round-trips through its JSON file
    assert type(grads).read(tmp_path / "g").kinds == grads.kinds


def test_probe_inputs_refuse_bad_values():
    with pytest.raises(InputError, match="--data is required"):
        ProbeInputs(data="")
    with pytest.raises(InputError, match="--n 0"):
        ProbeInputs(data="x", n=0)
    with pytest.raises(InputError, match="unknown probe 'svcca'"):
        PROBES.get("svcca")
