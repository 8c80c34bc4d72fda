"""Planted controls: `lnprobe claims` end to end on constructed checkpoints where each claim holds, or
fails, by construction (`lnprobe.claims.controls`), and the constructors themselves."""

import json
import math

import pytest
import torch

from lnprobe import cli
from lnprobe.claims import controls
from lnprobe.claims.verdicts import REFUTED, SUPPORTED
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import build_tiny, resolve_sites
from tests.conftest import image_batch

CLAIMS = ("cross_layer_similarity", "gradient_variance", "domain_adaptation")
FIGURES = [
    ("lnprobe.report.heatmaps", "similarity_figures"),
    ("lnprobe.report.lines", "gradvar_figures"),
    ("lnprobe.report.lines", "lnshift_figures"),
    ("lnprobe.report.heatmaps", "difference_figures"),
    ("lnprobe.report.lines", "training_variance_figures"),
]


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory):
    """{(holds, traces): (scenario, claims record, output dir)}: `lnprobe claims` on one scenario where every
    claim holds and one where every claim fails (over one planted base), with the training runs' gradient
    traces and without them (offline per-example gradients)."""
    root = tmp_path_factory.mktemp("controls")
    data = write_synth(root / "data", SynthConfig(n=30, seed=3)) / "instruct.json"
    base = controls.build_base(root / "base")
    runs = {}
    for holds in (True, False):
        scenario = controls.build_scenario(base, root / f"holds-{holds}", holds)
        for traces in (True, False):
            out = root / f"claims-{holds}-{traces}"
            argv = [*scenario.argv(data, out, traces), "--n", "16", "--batch-size", "4", "--bootstrap", "50"]
            argv += [] if traces else ["--no-patch"]  # the causal evidence does not enter verdicts (speed)
            with pytest.MonkeyPatch.context() as patch:
                if not traces:  # figures do not enter verdicts: drawn in the runs with traces only (speed)
                    for module, name in FIGURES:
                        patch.setattr(f"{module}.{name}", lambda *args, **kwargs: [])
                assert cli.main(argv) == 0
            runs[holds, traces] = (scenario, json.loads((out / "claims.json").read_text()), out)
    return runs


@pytest.fixture(scope="module")
def planted(planted_runs):
    """{holds: (scenario, record, out)} of the runs with gradient traces."""
    return {holds: planted_runs[holds, True] for holds in (True, False)}


def _claim(record, claim_id):
    return next(c for c in record["claims"] if c["id"] == claim_id)


@pytest.mark.parametrize("traces", [True, False], ids=["traces", "offline"])
@pytest.mark.parametrize("holds", [True, False], ids=["holds", "fails"])
@pytest.mark.parametrize("claim_id", CLAIMS)
def test_planted_verdict(planted_runs, claim_id, holds, traces):
    _, record, _ = planted_runs[holds, traces]
    assert _claim(record, claim_id)["verdict"] == (SUPPORTED if holds else REFUTED)


@pytest.mark.parametrize("holds", [True, False], ids=["holds", "fails"])
def test_offline_gradient_variance_falls_with_the_head_scale(planted_runs, holds):
    """Offline, the model with the scaled head has ~c² (1e-6) times the other's norm-gradient variance;
    the activations, hence claims 1 and 3, are the same as in the run with traces."""
    _, offline, _ = planted_runs[holds, False]
    _, with_traces, _ = planted_runs[holds, True]
    gradients = _claim(offline, "gradient_variance")
    assert all("offline" in gradients["numbers"][w]["source"] for w in ("ln", "full", "base"))
    ratio = gradients["tests"]["ratio_ln_over_full"]
    assert (ratio < 1e-4) if holds else (ratio > 1e4)
    for claim_id in ("cross_layer_similarity", "domain_adaptation"):
        assert _claim(offline, claim_id)["tests"] == _claim(with_traces, claim_id)["tests"]


def test_silenced_layers_are_copies_so_similarity_is_one(planted):
    _, record, _ = planted[True]
    numbers = _claim(record, "cross_layer_similarity")["numbers"]
    assert numbers["full"]["cka"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert numbers["full"]["cosine"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert numbers["ln"]["cka"]["value"] < 0.99  # the LN model's layers still write
    null = numbers["full"]["cka_null"]  # identical layers: far above the null of shuffled rows
    assert null["p95"] < 0.5 and null["p"] < 0.05 and abs(null["mean"]) < 0.1
    _, failing, _ = planted[False]
    numbers = _claim(failing, "cross_layer_similarity")["numbers"]
    assert numbers["full"]["cka"]["value"] < numbers["ln"]["cka"]["value"]


@pytest.mark.parametrize("holds", [True, False], ids=["holds", "fails"])
def test_gradient_variance_is_the_planted_variance(planted, holds):
    """The engine reads the traces (not offline gradients) and its variance is the planted sd², and equals
    an independent computation on the trace file."""
    from safetensors.torch import load_file

    from lnprobe.probes.gradvar.stats import TRACE_FILE

    scenario, record, _ = planted[holds]
    numbers = _claim(record, "gradient_variance")["numbers"]
    runs = (scenario.ln_run, scenario.full_run)
    for which, run, sd in zip(("ln", "full"), runs, controls.TRACE_SD[holds], strict=True):
        assert "training" in numbers[which]["source"]
        trace = load_file(str(run / TRACE_FILE))["norm_grads"].double()  # [samples, params]
        deviations = trace - trace.mean(0)
        independent = float((deviations**2).sum(0).mean() / (trace.shape[0] - 1))
        assert numbers[which]["variance"] == pytest.approx(independent, rel=1e-9)
        assert numbers[which]["variance"] == pytest.approx(sd**2, rel=0.15)
        lo, hi = numbers[which]["ci95"]
        assert lo < sd**2 < hi
    ratio = _claim(record, "gradient_variance")["tests"]["ratio_ln_over_full"]
    expected = (controls.TRACE_SD[holds][0] / controls.TRACE_SD[holds][1]) ** 2
    assert ratio == pytest.approx(expected, rel=0.3)
    lo, hi = _claim(record, "gradient_variance")["test"]["ci95"]  # the known log ratio inside its interval
    assert lo < math.log(expected) < hi and hi - lo < 1.5


def test_domain_gap_moves_at_every_norm(planted):
    for holds, moved in ((True, "narrower"), (False, "wider")):
        _, record, out = planted[holds]
        shift = json.loads((out / "probes" / "lnshift-ln" / "lnshift.json").read_text())
        outs = {s: g for s, g in shift["gaps"].items() if s.endswith(".out")}
        assert len(outs) == 2 * 4 + 1  # every decoder norm of the tiny model
        ratios = [g["tuned"] / g["base"] for g in outs.values()]
        if moved == "narrower":
            assert all(r < 0.97 for r in ratios), ratios
        else:
            assert all(r > 3 for r in ratios), ratios
        sign = _claim(record, "domain_adaptation")["tests"]["sign_test"]
        assert sign["statistic"] == (9 if holds else 0) and sign["p_value"] == pytest.approx(2 / 2**9)


def test_ln_delta_changes_only_norm_weights_and_head(planted):
    """The planted LN model is a real `ln` delta whose only differences from the base are the decoder norms
    (and, where the claims hold, the scaled head)."""
    from lnprobe.models import load

    scenario, _, _ = planted[True]
    base = dict(load(scenario.base).model.named_parameters())
    tuned = dict(load(scenario.ln).model.named_parameters())
    changed = {n for n, p in tuned.items() if not torch.equal(p, base[n])}
    sites = resolve_sites(load(scenario.base).model)
    assert changed == {f"{name}.weight" for name in sites.lm_norms()} | {f"{sites.lm_head}.weight"}
    assert (scenario.ln / "lnprobe_delta.json").is_file()


@pytest.mark.parametrize("holds", [True, False], ids=["holds", "fails"])
def test_reports_state_the_verdicts_with_figures(planted, holds):
    _, _, out = planted[holds]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    # the LN-minus-full map points the way the planted claim does: LN's layers less alike when it holds
    difference = (out / "probes" / "cka_difference.html").read_text()
    assert ("mean difference -" in difference) == holds and "ln minus full" in difference
    sim = json.loads((out / "probes" / "similarity-ln" / "similarity.json").read_text())
    assert (
        sim["config"]["label_a"] == "ln"
        and "cka: ln x ln" in (out / "probes" / "similarity-ln" / "similarity_cka.html").read_text()
    )
    verdict = SUPPORTED if holds else REFUTED
    assert (out / "report.md").read_text().count(f"**{verdict}**") >= 3


def test_constructors_plant_exactly_what_they_say():
    model, processor = build_tiny()
    sites = resolve_sites(model)
    d = model.config.text_config.hidden_size
    dims = controls.offset_dims(d)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    offset = controls.plant_modality_offset(model, sites, dims, 4.0)
    rms = float(before[f"{sites.embed_tokens}.weight"].pow(2).mean().sqrt())
    assert offset == pytest.approx(4.0 * rms)
    bias = f"{sites.connector}.linear_1.bias"
    after = dict(model.named_parameters())
    expected_bias = before[bias].clone()
    expected_bias[dims] += offset
    assert torch.equal(after[bias], expected_bias)
    assert after[f"{sites.embed_tokens}.weight"][:, dims].abs().sum() == 0
    outside = [i for i in range(d) if i not in dims]
    assert torch.equal(
        after[f"{sites.embed_tokens}.weight"][:, outside], before[f"{sites.embed_tokens}.weight"][:, outside]
    )

    norm = sites.lm_norms()[0] + ".weight"
    w0 = after[norm].detach().clone()
    controls.scale_norm_dims(model, sites, dims, 0.5, inside=False)
    w1 = dict(model.named_parameters())[norm]
    assert torch.equal(w1[dims], w0[dims]) and torch.allclose(w1[outside], 0.5 * w0[outside])

    controls.silence_layers(model, sites)
    batch = image_batch(processor)
    with torch.no_grad():
        hidden = model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    states = hidden.hidden_states  # embeddings, then every decoder layer's output
    assert all(torch.equal(s, states[0]) for s in states[1 : len(sites.layers)])
