"""`lnprobe patch`: in-place swaps equal freshly built models, a planted control (only layer K's norms moved)
is attributed to layer K, the recovered fraction equals a hand computation, and bad input exits 2."""

import json

import pytest
import torch
import torch.nn.functional as F

from lnprobe import cli
from lnprobe.data.llava import IGNORE, reference_answer
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, load, save_tiny
from lnprobe.probes.inputs import ProbeInputs, probe_batches
from lnprobe.probes.patch.run import NormSwap, differing_parameters, norm_units
from lnprobe.probes.patch.stats import fraction, resample_indices

K = 2  # the planted layer
N, BATCH = 8, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("patch")
    data = write_synth(root / "data", SynthConfig(n=20, seed=2)) / "instruct.json"
    base = save_tiny(root / "base", TinyConfig(seed=0))
    tuned = load(base)  # only layer K's two norms moved
    with torch.no_grad():
        tuned.model.get_submodule(tuned.sites.input_norms[K]).weight.mul_(4.0)
        tuned.model.get_submodule(tuned.sites.post_attention_norms[K]).weight.mul_(0.25)
    tuned.model.save_pretrained(root / "tuned")
    tuned.processor.save_pretrained(root / "tuned")
    return root, data, base, root / "tuned"


def _run(root, data, base, tuned, out, *extra):
    argv = [
        "patch",
        "--base",
        str(base),
        "--tuned",
        str(tuned),
        "--data",
        str(data),
        "--out",
        str(root / out),
    ]
    return cli.main(argv + ["--n", str(N), "--batch-size", str(BATCH), "--bootstrap", "200", *extra])


@pytest.fixture(scope="module")
def planted(setup):
    root, data, base, tuned = setup
    assert _run(root, data, base, tuned, "planted") == 0
    return json.loads((root / "planted" / "patch.json").read_text())


def _logits(model, batch):
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_swapping_in_place_equals_a_fresh_model_and_restores_exactly(setup):
    root, data, base, tuned = setup
    loaded = load(tuned)
    model = loaded.model.eval()
    swap = NormSwap(model, differing_parameters(model, str(base)))
    units = norm_units(model, loaded.sites)
    assert swap.changed == set(units[f"input.{K}"]) | set(units[f"post_attention.{K}"])
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = probe_batches(ProbeInputs(data=str(data), n=4, batch_size=4, progress=False), loaded.processor)[0]
    tuned_logits = _logits(model, batch)
    fresh = load(base).model.eval()
    swap.set(frozenset())  # every differing parameter at its base value: the base model
    assert torch.equal(_logits(model, batch), _logits(fresh, batch))
    swap.set(frozenset(units[f"input.{K}"]))  # into the base: layer K's tuned input norm
    with torch.no_grad():
        name = units[f"input.{K}"][0]
        fresh.get_parameter(name).copy_(original[name])
    assert torch.equal(_logits(model, batch), _logits(fresh, batch))
    assert not torch.equal(_logits(model, batch), tuned_logits)
    swap.restore()
    for n, p in model.named_parameters():
        assert torch.equal(p, original[n]), n
    assert torch.equal(_logits(model, batch), tuned_logits)


def test_planted_control_is_attributed_to_its_layer(planted, setup):
    root = setup[0]
    assert planted["gap"]["value"] > 0 and planted["other_changed"] == []
    rows = {r["unit"]: r for r in planted["units"]}
    assert {u for u, r in rows.items() if r["changed"]} == {f"input.{K}", f"post_attention.{K}"}
    per_layer = {}
    for r in planted["units"]:
        value = r["into_base"]["recovered"]["value"]
        per_layer[r["layer"]] = per_layer.get(r["layer"], 0.0) + value
    total = sum(per_layer.values())
    assert per_layer[K] / total >= 0.9
    assert all(abs(v / total) < 0.1 for layer, v in per_layer.items() if layer != K)
    # the cumulative curves switch exactly at K: layers 0..k hold K from k = K on, layers k.. up to k = K
    bottom = [p["recovered"]["value"] for p in planted["cumulative"]["bottom"]]
    top = [p["recovered"]["value"] for p in planted["cumulative"]["top"]]
    layers = len(bottom)
    assert bottom == [0.0] * K + [1.0] * (layers - K) and top == [1.0] * (K + 1) + [0.0] * (layers - K - 1)
    lo, hi = rows[f"post_attention.{K}"]["into_base"]["recovered"]["ci95"]
    assert lo <= rows[f"post_attention.{K}"]["into_base"]["recovered"]["value"] <= hi
    # passes: base, tuned, and one per distinct set of weights (the unchanged units and curves reuse them)
    assert planted["forward_passes"] == 4
    for f in ("patch.csv", "patch.png", "patch.html"):
        assert (root / "planted" / f).is_file()
    n_act = 3 * len(rows)  # activation patching: one row per unit and token kind
    assert (
        len((root / "planted" / "patch.csv").read_text().splitlines())
        == 1 + 2 * len(rows) + 2 * layers + n_act
    )


def test_activation_patching_by_token_kind_on_the_planted_model(planted, setup):
    """Only layer K's norms differ, so: below K the tuned norm outputs equal the base's (nothing to
    recover, exactly 0); the final norm's output at the text tokens carries everything the answers see (the
    head is the base's = the tuned's: exactly 1), at the image tokens nothing (0); layer K's input-norm
    output at every token equals patching its weight into the base (the input to that norm is the same in
    both models), a number the parameter patching measured by another route."""
    rows = {(a["unit"], a["tokens"]): a for a in planted["activations"]}
    layers = 1 + max(r["layer"] for r in planted["units"] if r["layer"] is not None)
    assert len(rows) == (2 * layers + 1) * 3
    for layer in range(K):
        for kind in ("input", "post_attention"):
            for tokens in ("image", "text", "both"):
                assert rows[(f"{kind}.{layer}", tokens)]["recovered"]["value"] == 0.0
    assert rows[("final", "text")]["recovered"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert rows[("final", "both")]["recovered"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert rows[("final", "image")]["recovered"]["value"] == pytest.approx(0.0, abs=1e-9)
    units = {r["unit"]: r for r in planted["units"]}
    by_weights = units[f"input.{K}"]["into_base"]["recovered"]["value"]
    assert rows[(f"input.{K}", "both")]["recovered"]["value"] == pytest.approx(by_weights, abs=1e-5)
    assert abs(by_weights) > 0.01  # a real effect, not 0 = 0
    assert planted["summary"]["activations_best"]["text"]["unit"] == "final"
    assert planted["activation_passes"] == (N // BATCH) * (1 + 3 * (2 * layers + 1))
    root = setup[0]
    assert (root / "planted" / "patch_tokens.png").is_file() and (
        root / "planted" / "patch_tokens.html"
    ).is_file()
    csv_rows = (root / "planted" / "patch.csv").read_text().splitlines()
    assert sum(r.startswith("activation:image,") for r in csv_rows) == 2 * layers + 1


def test_claims_cite_the_planted_patching(planted):
    """The domain claim's causal summary of the planted record: every decoder norm into the base is the
    tuned model (exactly 1), the best single norm is at layer K, the text-token output that recovers most is
    the final norm's (exactly 1), and the report lines quote them."""
    from lnprobe.claims.causal import causal_lines, causal_summary

    c = causal_summary(planted)
    assert c["decoder_norms"]["recovered"]["value"] == pytest.approx(1.0, abs=1e-9)
    assert c["best_norm"]["unit"] in (f"input.{K}", f"post_attention.{K}")
    assert c["best_output_by_tokens"]["text"]["unit"] == "final"
    assert c["accuracy"] == planted["accuracy"] and c["examples"] == planted["examples"]
    text = "\n".join(causal_lines({"ln": c}))
    assert "recovers 1 [1, 1]" in text and c["best_norm"]["unit"] in text


def test_null_control_reports_undefined_fractions(setup, capsys):
    root, data, base, _ = setup
    assert _run(root, data, base, base, "null") == 0
    assert "undefined" in capsys.readouterr().out
    rec = json.loads((root / "null" / "patch.json").read_text())
    assert rec["gap"]["value"] == 0 and rec["forward_passes"] == 1
    assert all(r["into_base"]["recovered"] == {"value": None, "ci95": None} for r in rec["units"])
    assert all(r["out_of_tuned"]["lost"]["value"] is None for r in rec["units"])
    assert rec["activations"] and all(a["recovered"]["value"] is None for a in rec["activations"])
    assert not rec["summary"]["defined"]


def _plain_losses(model, batches):
    """Per-example mean answer-token loss from the full logits, by hand."""
    out = []
    with torch.no_grad():
        for b in batches:
            logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits[:, :-1].float()
            labels = b["labels"][:, 1:]
            for row_logits, row_labels in zip(logits, labels, strict=True):
                keep = row_labels != IGNORE
                out.append(F.cross_entropy(row_logits[keep], row_labels[keep]).double())
    return torch.stack(out)


def _plain_accuracy(model, batches, stop) -> float:
    """Share of examples whose first answer's argmax tokens (full logits) are all the reference's."""
    hits = []
    with torch.no_grad():
        for b in batches:
            best = model(**{k: v for k, v in b.items() if k != "labels"}).logits.argmax(-1)
            for row, labels in zip(best, b["labels"], strict=True):
                start, answer = reference_answer(labels, stop)
                hits.append(row[start - 1 : start - 1 + len(answer)].tolist() == answer)
    return sum(hits) / len(hits)


def test_recovered_fraction_matches_a_hand_computation(planted, setup):
    root, data, base, tuned = setup
    base_model, processor = load(base).model.eval(), load(base).processor
    tuned_model = load(tuned).model.eval()
    batches = probe_batches(ProbeInputs(data=str(data), n=N, batch_size=BATCH), processor)
    lb, lt = _plain_losses(base_model, batches), _plain_losses(tuned_model, batches)
    name = next(n for n, _ in tuned_model.named_parameters() if f"layers.{K}.post_attention" in n)
    with torch.no_grad():
        base_model.get_parameter(name).copy_(tuned_model.get_parameter(name))
    stop = {processor.tokenizer.eos_token_id, processor.tokenizer.pad_token_id}
    assert planted["accuracy"] == {
        "base": _plain_accuracy(base_model, batches, stop),
        "tuned": _plain_accuracy(tuned_model, batches, stop),
    }
    lp = _plain_losses(base_model, batches)
    expected = float((lb.mean() - lp.mean()) / (lb.mean() - lt.mean()))
    row = next(r for r in planted["units"] if r["unit"] == f"post_attention.{K}")
    assert row["into_base"]["recovered"]["value"] == pytest.approx(expected, abs=1e-3)
    assert row["into_base"]["accuracy"] == _plain_accuracy(base_model, batches, stop)
    assert planted["losses"]["base"] == pytest.approx(float(lb.mean()), abs=1e-5)
    assert planted["losses"]["tuned"] == pytest.approx(float(lt.mean()), abs=1e-5)


def test_fraction_and_its_bootstrap_by_hand():
    lb = torch.tensor([3.0, 2.0, 4.0, 3.0])
    lt = torch.tensor([1.0, 1.0, 2.0, 2.0])
    lp = torch.tensor([2.0, 1.5, 3.0, 2.5])
    idx = resample_indices(4, 50, 0)
    f = fraction(lb, lp, lb, lt, idx)
    assert f["value"] == pytest.approx((3.0 - 2.25) / (3.0 - 1.5))
    by_hand = torch.stack([(lb[i].mean() - lp[i].mean()) / (lb[i].mean() - lt[i].mean()) for i in idx])
    assert f["ci95"] == pytest.approx(
        torch.quantile(by_hand.double(), torch.tensor([0.025, 0.975]).double()).tolist()
    )
    assert fraction(lb, lp, lb, lb, idx) == {"value": None, "ci95": None}


def test_bad_input_exits_2_and_writes_nothing(setup, tmp_path, capsys):
    root, data, base, tuned = setup
    argv = ["patch", "--tuned", str(tuned), "--data", str(data), "--out", str(tmp_path / "a")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--base is required" in err[0]
    few = tmp_path / "few.json"
    few.write_text(json.dumps(json.loads(data.read_text())[:3]))
    assert _run(tmp_path, few, base, tuned, "b") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fewer than --n" in err[0]
    other = save_tiny(tmp_path / "other", TinyConfig(hidden_size=48, num_heads=4, num_kv_heads=2))
    assert _run(tmp_path, data, other, tuned, "c") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match" in err[0]
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


def test_report_and_runs_index_read_the_saved_json(planted, setup, tmp_path):
    import pandas as pd

    root = setup[0]
    assert cli.main(["report", str(root / "planted")]) == 0
    md = (root / "planted" / "report.md").read_text()
    value = next(r for r in planted["units"] if r["unit"] == f"post_attention.{K}")["into_base"]["recovered"]
    assert f"| post_attention.{K} recovered into the base | {value['value']:.4g} |" in md
    assert "![patch](patch.png)" in md
    assert cli.main(["runs", str(root / "planted"), "--out", str(tmp_path / "index")]) == 0
    row = pd.read_csv(tmp_path / "index" / "runs.csv").iloc[0]
    assert row["command"] == "patch" and row["best_unit"] == planted["summary"]["best_unit"]
