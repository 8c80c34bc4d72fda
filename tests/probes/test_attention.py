"""`lnprobe attention`: a planted control (query projections zeroed: uniform causal attention, whose share on
image tokens has a closed form), a null control (one model twice: differences exactly 0), a hand computation
from `output_attentions=True`, the bootstrap by gathering, the report and runs index, and bad input exits 2
with nothing written."""

import json

import pytest
import torch

from lnprobe import cli
from lnprobe.data.llava import IMAGE
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, load, save_tiny
from lnprobe.probes.attention.stats import mean_ci, resample_counts
from lnprobe.probes.inputs import ProbeInputs, probe_batches
from lnprobe.probes.patch.stats import resample_indices

N, BATCH, DRAWS = 8, 4, 200


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention")
    data = write_synth(root / "data", SynthConfig(n=20, seed=2)) / "instruct.json"
    base = save_tiny(root / "base", TinyConfig(seed=0))
    zero = load(base)  # every decoder layer's query projection zero: all scores 0, softmax uniform
    with torch.no_grad():
        for name in zero.sites.attn:
            for p in zero.model.get_submodule(name).q_proj.parameters():
                p.zero_()
    zero.model.save_pretrained(root / "zero")
    zero.processor.save_pretrained(root / "zero")
    return root, data, base, root / "zero"


def _run(out, data, *models: str, extra=()):
    argv = ["attention", *(a for m in models for a in ("--model", m)), "--data", str(data), "--out", str(out)]
    return cli.main(argv + ["--n", str(N), "--batch-size", str(BATCH), "--bootstrap", str(DRAWS), *extra])


@pytest.fixture(scope="module")
def planted(setup):
    root, data, base, zero = setup
    assert _run(root / "planted", data, f"base={base}", f"zero={zero}") == 0
    return json.loads((root / "planted" / "attention.json").read_text())


def _batches(data, processor):
    return probe_batches(ProbeInputs(data=str(data), n=N, batch_size=BATCH, progress=False), processor)


def _uniform_shares(batches, image_id) -> list[float]:
    """Per example, under uniform causal attention over a right-padded row: the query positions i (real,
    not image, after the first image token) see positions 0..i, of which cumsum(image)[i] are image
    tokens; the share is the mean over those i of cumsum(image)[i] / (i + 1)."""
    out = []
    for batch in batches:
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
            length = int(mask.sum())
            assert mask[:length].all()  # right padding: the real tokens are 0..length-1
            image = [int(t) == image_id for t in ids[:length]]
            first = image.index(True)
            seen, shares = 0, []
            for i in range(length):
                seen += image[i]
                if i > first and not image[i]:
                    shares.append(seen / (i + 1))
            out.append(sum(shares) / len(shares))
    return out


def test_planted_uniform_attention_matches_the_closed_form(planted, setup):
    root, data, base, _ = setup
    processor = load(base).processor
    expected = _uniform_shares(_batches(data, processor), processor.tokenizer.convert_tokens_to_ids(IMAGE))
    assert planted["examples"] == N and planted["without_image"] == 0
    want = sum(expected) / len(expected)
    zero = planted["models"]["zero"]
    for layer in range(planted["layers"]):
        for head in range(planted["heads"]):
            assert zero["share"]["value"][layer][head] == pytest.approx(want, abs=1e-5), (layer, head)
    assert zero["layer_mean"]["value"] == pytest.approx([want] * planted["layers"], abs=1e-5)
    assert zero["mean"]["value"] == pytest.approx(want, abs=1e-5)
    lo, hi = zero["mean"]["ci95"]
    assert lo < want < hi and min(expected) <= lo and hi <= max(expected)
    diff = planted["differences"]["zero - base"]
    assert diff["minuend"] == "zero" and diff["subtrahend"] == "base"
    assert diff["mean"]["value"] == pytest.approx(
        zero["mean"]["value"] - planted["models"]["base"]["mean"]["value"], abs=1e-12
    )
    for f in ("attention.csv", "attention.png", "attention.html"):
        assert (root / "planted" / f).is_file()
    rows = (root / "planted" / "attention.csv").read_text().splitlines()
    cells = planted["layers"] * planted["heads"] + planted["layers"] + 1
    assert len(rows) == 1 + 3 * cells  # two models and one difference


def test_null_control_same_model_twice_differs_by_exactly_zero(setup, tmp_path):
    _, data, base, _ = setup
    assert _run(tmp_path / "null", data, f"a={base}", f"b={base}") == 0
    rec = json.loads((tmp_path / "null" / "attention.json").read_text())
    d = rec["differences"]["b - a"]
    layers, heads = rec["layers"], rec["heads"]
    assert d["share"]["value"] == [[0.0] * heads] * layers
    assert d["share"]["ci95_low"] == [[0.0] * heads] * layers == d["share"]["ci95_high"]
    assert d["layer_mean"] == {"value": [0.0] * layers, "ci95": [[0.0, 0.0]] * layers}
    assert d["mean"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert rec["models"]["a"]["share"] == rec["models"]["b"]["share"]


def _hand_shares(model_dir, data) -> torch.Tensor:
    """`[n, layers, heads]` shares on image tokens by hand, from `output_attentions=True`: per example, the
    attention each text query after the first image token puts on the image tokens, averaged over them."""
    loaded = load(model_dir)
    model = loaded.model.eval()
    model.set_attn_implementation("eager")
    image_id = loaded.processor.tokenizer.convert_tokens_to_ids(IMAGE)
    rows = []
    with torch.no_grad():
        for batch in _batches(data, loaded.processor):
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            attentions = model(**inputs, output_attentions=True).attentions
            for row, (ids, mask) in enumerate(zip(batch["input_ids"], batch["attention_mask"], strict=True)):
                image = [i for i, t in enumerate(ids.tolist()) if t == image_id]
                queries = [i for i in range(len(ids)) if mask[i] and i > image[0] and i not in image]
                rows.append([[float(a[row, h][queries][:, image].sum(1).mean()) for h in range(a.shape[1])]
                             for a in attentions])  # fmt: skip
    return torch.tensor(rows, dtype=torch.float64)


def test_shares_match_a_hand_computation_from_output_attentions(planted, setup):
    _, data, base, _ = setup
    values = _hand_shares(base, data)  # [n, layers, heads]
    got = planted["models"]["base"]
    assert torch.allclose(
        torch.tensor(got["share"]["value"], dtype=torch.float64), values.mean(0), rtol=0, atol=1e-6
    )
    assert got["mean"]["value"] == pytest.approx(float(values.mean()), abs=1e-6)
    assert values.std(0).max() > 0  # real attention differs between examples (not a constant)
    # the interval: resampled means by gathering the drawn examples, 2.5 / 97.5 % quantiles
    idx = resample_indices(N, DRAWS, 0)
    means = values[idx].mean(1)  # [draws, layers, heads]
    q = torch.quantile(means[:, 1, 2], torch.tensor([0.025, 0.975], dtype=torch.float64))
    assert [got["share"]["ci95_low"][1][2], got["share"]["ci95_high"][1][2]] == pytest.approx(
        q.tolist(), abs=1e-6
    )


def test_planted_difference_in_one_layer_is_found_with_its_sign_and_size(setup, tmp_path):
    """A planted, clearly non-zero difference: `sharp` has layer 0's query projection x 1000 (peaked
    attention), `flat` is `sharp` with it zeroed (uniform attention). Layer 0's difference flat - sharp must
    equal the closed-form uniform share minus sharp's hand-computed share, be large, and its interval must
    exclude 0; every head of layer 0 moves the way the hand computation says."""
    root, data, base, _ = setup
    models = {}
    for name, scale in (("sharp", 1000.0), ("flat", 0.0)):
        loaded = load(base)
        with torch.no_grad():
            for p in loaded.model.get_submodule(loaded.sites.attn[0]).q_proj.parameters():
                p.mul_(scale)
        models[name] = tmp_path / name
        loaded.model.save_pretrained(models[name])
        loaded.processor.save_pretrained(models[name])
    assert _run(tmp_path / "out", data, f"sharp={models['sharp']}", f"flat={models['flat']}") == 0
    rec = json.loads((tmp_path / "out" / "attention.json").read_text())
    sharp = _hand_shares(models["sharp"], data)[:, 0]  # [n, heads], layer 0
    processor = load(base).processor
    uniform = torch.tensor(
        _uniform_shares(_batches(data, processor), processor.tokenizer.convert_tokens_to_ids(IMAGE))
    )
    expected = float(uniform.mean() - sharp.mean())
    diff = rec["differences"]["flat - sharp"]
    assert diff["layer_mean"]["value"][0] == pytest.approx(expected, abs=1e-6)
    assert abs(expected) > 0.03  # a real effect (0.062 here), not rounding
    lo, hi = diff["layer_mean"]["ci95"][0]
    assert lo <= expected <= hi and (lo > 0 or hi < 0)
    per_head = (uniform[:, None] - sharp).mean(0)
    assert diff["share"]["value"][0] == pytest.approx(per_head.tolist(), abs=1e-6)


def test_bootstrap_by_counts_equals_bootstrap_by_gathering():
    values = torch.rand(7, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, lo, hi = mean_ci(values, resample_counts(7, 50, 3))
    means = values[resample_indices(7, 50, 3)].mean(1)
    q = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64), dim=0)
    assert torch.allclose(mean, values.mean(0)) and torch.allclose(lo, q[0]) and torch.allclose(hi, q[1])


def test_report_and_runs_index_read_the_saved_json(planted, setup, tmp_path):
    import pandas as pd

    root = setup[0]
    assert cli.main(["report", str(root / "planted")]) == 0
    md = (root / "planted" / "report.md").read_text()
    mean = planted["models"]["zero"]["mean"]["value"]
    assert f"| zero: share on image tokens, mean over layers and heads | {mean:.4g} |" in md
    assert "| zero - base: difference, layer 0 |" in md and "![attention](attention.png)" in md
    assert cli.main(["runs", str(root / "planted"), "--out", str(tmp_path / "index")]) == 0
    table = pd.read_csv(tmp_path / "index" / "runs.csv")
    assert list(table["label"]) == ["base", "zero"] and set(table["command"]) == {"attention"}
    assert table["image_attention"].tolist() == pytest.approx(
        [planted["summary"]["mean"][k] for k in ("base", "zero")]
    )


def _no_images(data, tmp_path):
    records = json.loads(data.read_text())[:N]
    for r in records:
        r.pop("image")
        for turn in r["conversations"]:
            turn["value"] = turn["value"].replace("<image>\n", "").replace("<image>", "")
    path = tmp_path / "text.json"
    path.write_text(json.dumps(records))
    return path


def test_bad_input_exits_2_with_one_line_and_writes_nothing(setup, tmp_path, capsys):
    _, data, base, _ = setup
    other = save_tiny(tmp_path / "other", TinyConfig(num_layers=2))
    cases = [
        ((), data, "--model is required"),
        ((f"a={base}", f"a={base}"), data, "label given twice"),
        ((f"{base}",), data, "expected LABEL=PATH"),
        ((f"a={base}",), _no_images(data, tmp_path), "no record has an image"),
        ((f"a={base}", f"b={other}"), data, "2 decoder layers x 4 heads, but a has 4 x 4"),
        ((f"a={base}", f"b={tmp_path / 'missing'}"), data, "missing: no such directory"),
    ]
    for i, (models, path, message) in enumerate(cases):
        assert _run(tmp_path / f"out{i}", path, *models) == 2, message
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (message, err)
        assert not (tmp_path / f"out{i}").exists()
