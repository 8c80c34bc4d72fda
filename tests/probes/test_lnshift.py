"""LayerNorm statistics against hand-worked formulas, and `lnprobe lnshift` end to end on tiny models."""

import json
import math

import pytest
import torch

from lnprobe import cli
from lnprobe.checkpoints.export import export_peft
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, load, save_tiny
from lnprobe.probes.lnshift.stats import Moments, MomentSummary, modality_gap, summarize_moments, weight_shift
from tests.checkpoints.test_export import make_delta


def test_weight_shift_hand_worked():
    w0 = torch.tensor([1.0, 2.0, 0.0, 4.0])
    w = torch.tensor([1.0, 3.0, 1.0, 4.0])
    s = weight_shift(w, w0, top_k=2)
    assert s["rel_l2"] == pytest.approx(math.sqrt(2) / math.sqrt(21))
    assert s["cosine"] == pytest.approx(23 / (math.sqrt(27) * math.sqrt(21)))
    assert s["ratio_quantiles"]["min"] == 1.0 and s["ratio_quantiles"]["max"] == 1.5
    assert s["ratio_quantiles"]["median"] == 1.0  # ratios 1, 1.5, 1 (the zero base dimension left out)
    assert [d["dim"] for d in s["top_dims"]] == [1, 2] or [d["dim"] for d in s["top_dims"]] == [2, 1]
    assert s["changed"] and s["numel"] == 4
    zero = torch.zeros(3)
    assert weight_shift(zero, zero)["rel_l2"] == 0.0 and not weight_shift(zero, zero)["changed"]
    assert weight_shift(torch.ones(3), zero)["rel_l2"] is None  # a zero bias that moved: undefined


def test_moments_match_direct_formulas_and_stream():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=gen) ** 3 + 2.0  # skewed, heavy-tailed, offset
    x[7, 5] = 400.0  # an outlier dimension
    m = Moments(16)
    for chunk in x.split(37):
        m.update(chunk)
    s = summarize_moments(m, factor=6.0)
    v = x.double().flatten()
    mean = v.mean()
    c = v - mean
    assert s.tokens == 500
    assert s.mean == pytest.approx(float(mean), rel=1e-10)
    assert s.variance == pytest.approx(float(c.square().mean()), rel=1e-9)
    assert s.rms == pytest.approx(float(v.square().mean().sqrt()), rel=1e-10)
    kurt = float((c**4).mean() / c.square().mean() ** 2 - 3)
    assert s.kurtosis == pytest.approx(kurt, rel=1e-6)
    assert s.dim_mean == pytest.approx(x.double().mean(0).tolist(), rel=1e-9)
    assert s.dim_std == pytest.approx(x.double().std(0, correction=0).tolist(), rel=1e-8)
    assert s.outliers[0]["dim"] == 5 and s.outliers[0]["max_abs"] == 400.0


def _summary(mean, std, rms):
    return MomentSummary(1, 0.0, 0.0, rms, 0.0, list(mean), list(std), [])


def test_modality_gap_analytic():
    text = _summary([0.0] * 4, [1.0] * 4, rms=2.0)
    assert modality_gap(_summary([0.0] * 4, [1.0] * 4, 2.0), text) == 0.0
    assert modality_gap(_summary([3.0] * 4, [1.0] * 4, 2.0), text) == pytest.approx(1.5)
    # W2 of N(0,1) vs N(0,4) per dimension is |1 - 2| = 1
    assert modality_gap(_summary([0.0] * 4, [2.0] * 4, 2.0), text) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lnshift")
    data = write_synth(root / "data", SynthConfig(n=20, seed=2))
    base = save_tiny(root / "base", TinyConfig(seed=0))
    tuned = load(base)  # layer 1's input norm scaled by 1.5: a known shift
    norm = tuned.model.get_submodule(tuned.sites.input_norms[1])
    with torch.no_grad():
        norm.weight.mul_(1.5)
    tuned.model.save_pretrained(root / "tuned")
    tuned.processor.save_pretrained(root / "tuned")
    return root, data, base


def _run(root, data, ckpt, base, out, *extra):
    argv = ["lnshift", str(ckpt), "--base", str(base), "--data", str(data / "instruct.json")]
    return cli.main(argv + ["--out", str(root / out), "--n", "6", "--batch-size", "3", *extra])


def test_lnshift_measures_a_known_shift(setup):
    root, data, base = setup
    assert _run(root, data, root / "tuned", base, "out") == 0
    rec = json.loads((root / "out" / "lnshift.json").read_text())
    changed = {n: s for n, s in rec["weights"].items() if s["changed"]}
    assert len(changed) == 1
    ((name, s),) = changed.items()
    assert "layers.1.input_layernorm.weight" in name
    assert s["rel_l2"] == pytest.approx(0.5, rel=1e-6) and s["cosine"] == pytest.approx(1.0)
    tuned, basestats = rec["activations"]["tuned"], rec["activations"]["base"]
    # the input of the scaled norm is unchanged; its output is 1.5x in every modality
    for mod in ("image", "text"):
        assert tuned["input_norm.1.in"][mod]["rms"] == pytest.approx(basestats["input_norm.1.in"][mod]["rms"])
        assert tuned["input_norm.1.out"][mod]["rms"] == pytest.approx(
            1.5 * basestats["input_norm.1.out"][mod]["rms"], rel=1e-5
        )
        assert tuned["input_norm.0.out"][mod] == basestats["input_norm.0.out"][mod]
    # scaling a norm's output scales both modalities alike: the relative gap there is unchanged
    gap = rec["gaps"]["input_norm.1.out"]
    assert gap["tuned"] == pytest.approx(gap["base"], rel=1e-5)
    assert not rec["no_norm_changed"]
    for f in ("lnshift_weights.csv", "lnshift_activations.csv", "lnshift.png", "lnshift.html"):
        assert (root / "out" / f).is_file()


def test_lnshift_reads_deltas_and_peft_adapters_alike(setup, tmp_path):
    root, data, base = setup
    make_delta(base, "ln", tmp_path / "delta")
    export_peft(tmp_path / "delta", tmp_path / "peft")
    recs = []
    for ckpt, out in ((tmp_path / "delta", "d"), (tmp_path / "peft", "p")):
        assert _run(root, data, ckpt, base, f"from-{out}", "--no-modality-split") == 0
        recs.append(json.loads((root / f"from-{out}" / "lnshift.json").read_text()))
    a, b = (r["weights"] for r in recs)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name]["rel_l2"] == pytest.approx(b[name]["rel_l2"]), name
    assert sum(s["changed"] for s in a.values()) > 0
    assert set(next(iter(recs[0]["activations"]["tuned"].values()))) == {"all"}


def test_unchanged_norms_are_flagged_not_an_error(setup, capsys):
    root, data, base = setup
    assert _run(root, data, base, base, "same") == 0
    assert "no norm changed" in capsys.readouterr().out
    rec = json.loads((root / "same" / "lnshift.json").read_text())
    assert rec["no_norm_changed"] and rec["summary"]["changed"] == 0


def test_bad_input_exits_2(setup, tmp_path, capsys):
    root, data, base = setup
    other = save_tiny(tmp_path / "other", TinyConfig(hidden_size=48, num_heads=4, num_kv_heads=2))
    assert _run(root, data, other, base, "bad1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match" in err[0] and "tensor" in err[0]
    text_only = tmp_path / "text.json"
    records = json.loads((data / "instruct.json").read_text())
    for r in records:
        r.pop("image", None)
        for turn in r["conversations"]:
            turn["value"] = turn["value"].replace("<image>", "").strip()
    text_only.write_text(json.dumps(records))
    argv = [
        "lnshift",
        str(root / "tuned"),
        "--base",
        str(base),
        "--data",
        str(text_only),
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main(argv) == 2
    assert "no record has an image" in capsys.readouterr().err
    assert not (root / "bad1").exists() and not (tmp_path / "o").exists()
    assert cli.main(["lnshift", str(root / "tuned"), "--data", str(text_only)]) == 2
