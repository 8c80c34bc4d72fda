"""Planted massive activations (attention sinks) in the probes' commands: found where planted, left out of
similarity, linprobe and lnshift by default (kept with --keep-sink-tokens), and recorded in each output;
a sink rule that leaves nothing is one line and exit 2."""

import json
import shutil

import numpy as np
import pytest

from lnprobe import cli
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, save_tiny
from tests.conftest import every_other, plant_sink


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sinks")
    data = write_synth(root / "data", SynthConfig(n=8, seed=5))
    a = save_tiny(root / "a", TinyConfig(seed=0))
    for copy in ("planted", "planted2"):  # the same weights; a sink is planted when one is loaded
        shutil.copytree(a, root / copy)
    specs = {k: str(root / k) for k in ("a", "planted", "planted2")}
    return {"root": root, "data": str(data / "instruct.json"), **specs}


def planting(monkeypatch, module, name: str, plants: dict):
    """`module.name` (a loader) plants a sink in the model it loads from a spec in `plants`
    ({spec: (layers, where)}, `where` as `plant_sink`'s `at`)."""
    real = getattr(module, name)

    def load_planted(path, *args, **kwargs):
        loaded = real(path, *args, **kwargs)
        if str(path) in plants:
            plant_sink(loaded.model, *plants[str(path)])
        return loaded

    monkeypatch.setattr(module, name, load_planted)


def similarity(world, out, *extra, a=None):
    argv = ["similarity", a or world["planted"], "--data", world["data"], "--out", str(world["root"] / out)]
    return cli.main([*argv, "--n", "4", "--batch-size", "4", "-m", "cka", "--no-progress", *extra])


def token_id(world, token: str) -> int:
    from lnprobe.models import load

    return load(world["a"]).processor.tokenizer.convert_tokens_to_ids(token)


@pytest.fixture
def planted_similarity(world, monkeypatch):
    """`planted` with a sink at each first token from layer 1 on, `planted2` at the token 'Ġchat' (the
    third) from layer 2 on."""
    from lnprobe.probes.similarity import run

    chat = token_id(world, "\u0120chat")
    planting(monkeypatch, run, "load", {world["planted"]: ([1], "first"), world["planted2"]: ([2], chat)})


def test_similarity_leaves_out_a_planted_sink_and_records_it(world, planted_similarity, capsys):
    assert similarity(world, "default") == 0
    assert "4 massive-activation (sink) tokens left out, at position(s) 0" in capsys.readouterr().out
    record = json.loads((world["root"] / "default" / "similarity.json").read_text())
    sinks = record["sink_tokens"]
    assert sinks["excluded"] and sinks["factor"] == 20.0 and sinks["count"] == 4
    assert {t["position"] for t in sinks["tokens"]} == {0}  # exactly where it was planted
    assert len({t["example"] for t in sinks["tokens"]}) == 4  # once per example
    for token in sinks["tokens"]:  # massive at the planted layer's output and after it, not before
        assert set(token["sites"]) == {"layer.1", "layer.2", "layer.3"}
        assert all(s["norm"] > 20 * s["median"] for s in token["sites"].values())
    assert similarity(world, "kept", "--keep-sink-tokens") == 0
    kept = json.loads((world["root"] / "kept" / "similarity.json").read_text())
    assert not kept["sink_tokens"]["excluded"] and kept["sink_tokens"]["tokens"] == sinks["tokens"]
    with_sink = np.array(kept["metrics"]["cka"]["matrix"])
    without = np.array(record["metrics"]["cka"]["matrix"])
    assert with_sink[1, 3] > 0.99 and without[1, 3] < with_sink[1, 3] - 0.05  # the sink made them alike
    assert record["config"]["keep_sink_tokens"] is False and kept["config"]["keep_sink_tokens"] is True


def test_two_checkpoints_leave_out_the_tokens_either_flags(world, planted_similarity):
    """The same weights, A with a sink at position 0 and B at position 2: both positions are left out of
    both sides' rows (A's passed to B's pass, B's dropped from A's saved rows), so the rows before the
    planted layers are identical (CKA 1 at layer 0) and the rest stay matched."""
    assert similarity(world, "pair", world["planted2"]) == 0
    record = json.loads((world["root"] / "pair" / "similarity.json").read_text())
    found = {(t["model"], t["position"]) for t in record["sink_tokens"]["tokens"]}
    assert found == {("a", 0), ("b", 2)} and record["sink_tokens"]["count"] == 8
    diagonal = record["metrics"]["cka"]["diagonal"]
    assert diagonal[0] == pytest.approx(1.0, abs=1e-6) and diagonal[3] < 0.999


def test_a_sink_rule_that_leaves_nothing_exits_2(world, monkeypatch, capsys):
    """Every image token massive at one layer or another (`every_other`): an image-token selection has
    nothing left."""
    from lnprobe.probes.similarity import run

    image_id = token_id(world, "<image>")
    real = run.load

    def load_planted(path, *args, **kwargs):
        loaded = real(path, *args, **kwargs)
        plant_sink(loaded.model, [1], every_other(image_id, 0), scale=1e3)
        plant_sink(loaded.model, [2], every_other(image_id, 1), scale=1e6)
        return loaded

    monkeypatch.setattr(run, "load", load_planted)
    capsys.readouterr()
    assert similarity(world, "nothing", "--tokens", "image") == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "excludes every one of the minibatch's 64 selected tokens" in lines[0]
    assert "Traceback" not in out.err and out.out == ""
    assert not (world["root"] / "nothing").exists()  # nothing written


def test_lnshift_leaves_out_a_models_sink(world, monkeypatch):
    from lnprobe.capture import SinkLog, SinkRule
    from lnprobe.probes.inputs import ProbeInputs
    from lnprobe.probes.lnshift import run
    from lnprobe.probes.lnshift.config import LnShiftConfig

    planting(monkeypatch, run, "load_multimodal", {world["planted"]: ([1], "first")})
    inputs = ProbeInputs(data=world["data"], n=4, batch_size=4, progress=False)
    cfg = LnShiftConfig(ckpt=world["planted"], base=world["a"], inputs=inputs, out=str(world["root"] / "l"))
    log = SinkLog(SinkRule())
    tuned, base = (
        run._pass(cfg.ckpt, cfg, log, "tuned")["stats"],
        run._pass(cfg.base, cfg, log, "base")["stats"],
    )
    found = {(t["model"], t["position"]) for t in log.tokens}
    assert found == {("tuned", 0)} and len(log.tokens) == 4
    where = log.tokens[0]["sites"]  # massive after the planted layer 1, not before
    assert "input_norm.2.in" in where and "final_norm.in" in where and "input_norm.1.in" not in where
    for site in ("input_norm.0.in", "input_norm.3.in"):  # one text token fewer per example
        assert tuned[site]["text"]["tokens"] == base[site]["text"]["tokens"] - 4
        assert tuned[site]["image"]["tokens"] == base[site]["image"]["tokens"]
    assert tuned["input_norm.0.in"]["text"]["rms"] != base["input_norm.0.in"]["text"]["rms"]


def test_linprobe_leaves_out_a_models_sink(world, monkeypatch):
    from lnprobe.capture import SinkLog, SinkRule
    from lnprobe.probes.inputs import ProbeInputs
    from lnprobe.probes.linprobe import run
    from lnprobe.probes.linprobe.config import LinprobeConfig

    planting(monkeypatch, run, "load_multimodal", {world["planted"]: ([1], "first")})
    inputs = ProbeInputs(data=world["data"], n=4, batch_size=4, progress=False)
    models = (f"base={world['a']}", f"planted={world['planted']}")
    cfg = LinprobeConfig(inputs=inputs, out=str(world["root"] / "p"), models=models, folds=2)
    log = SinkLog(SinkRule())
    rows, clean, _, kept_clean = run.capture_model("base", world["a"], cfg, None, log)
    _, planted, _, kept = run.capture_model("planted", world["planted"], cfg, rows, log)
    assert kept_clean.all() and {(t["model"], t["position"]) for t in log.tokens} == {("planted", 0)}
    firsts = np.flatnonzero(np.diff(rows.example, prepend=-1))  # each example's first token
    assert np.array_equal(np.flatnonzero(~kept), firsts)
    probe_kept = kept[rows.probe]
    assert not probe_kept.all()  # some probe rows fell on a sink, and are not probed
    site = "input_norm.0.in"
    assert planted[site][0].shape[0] == probe_kept.sum() == clean[site][0].shape[0] - (~probe_kept).sum()
    np.testing.assert_array_equal(planted[site][0], clean[site][0][probe_kept])  # layer 0: untouched rows
