"""The claims verdict rules on constructed statistics, and `lnprobe claims` end to end on tiny checkpoints."""

import json

import pytest

from lnprobe import cli
from lnprobe.claims.verdicts import INCONCLUSIVE, OUTCOMES, REFUTED, SUPPORTED, sign_verdict
from lnprobe.data.synth import SynthConfig, write_synth
from tests.checkpoints.test_export import make_delta


def test_sign_verdict_against_the_binomial_distribution():
    # 8 of 8 layers lower: p = 2 / 256
    v = sign_verdict([(1.0, 2.0)] * 8)
    assert v.verdict == SUPPORTED and v.p_value == pytest.approx(2 / 256)
    assert sign_verdict([(2.0, 1.0)] * 8).verdict == REFUTED
    # 6 of 8: p = 2 * (1 + 8 + 28) / 256 = 0.289
    v = sign_verdict([(1.0, 2.0)] * 6 + [(2.0, 1.0)] * 2)
    assert v.verdict == INCONCLUSIVE and v.p_value == pytest.approx(74 / 256)
    # 5 of 5 cannot reach p < 0.05 (p = 1/16); ties are left out
    assert sign_verdict([(1.0, 2.0)] * 5 + [(1.0, 1.0)] * 3).verdict == INCONCLUSIVE
    assert sign_verdict([]).verdict == INCONCLUSIVE


def test_claims_end_to_end(tiny_dir, tmp_path, capsys):
    data = write_synth(tmp_path / "data", SynthConfig(n=30, seed=3))
    make_delta(tiny_dir, "ln", tmp_path / "ln")
    full = tmp_path / "full-model"
    from lnprobe.models import load

    loaded = load(tiny_dir)  # a "fully finetuned" model: every LM weight perturbed
    import torch

    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    loaded.model.save_pretrained(full)
    loaded.processor.save_pretrained(full)
    out = tmp_path / "claims"
    argv = ["claims", "--base", tiny_dir, "--ln", str(tmp_path / "ln"), "--full", str(full)]
    argv += ["--data", str(data / "instruct.json"), "--out", str(out), "--n", "16", "--batch-size", "4"]
    assert cli.main([*argv, "--bootstrap", "50", "--model", f"ln-simp={tmp_path / 'ln'}"]) == 0
    record = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in record["claims"]] == [
        "cross_layer_similarity",
        "gradient_variance",
        "domain_adaptation",
    ]
    for claim in record["claims"]:
        assert claim["verdict"] in OUTCOMES
    sim = record["claims"][0]["numbers"]
    assert set(sim) == {"base", "ln", "full", "ln-simp"}
    assert sim["ln"]["cka"] == sim["ln-simp"]["cka"]  # the same checkpoint under two names
    grads = record["claims"][1]["numbers"]
    assert (
        grads["ln"]["samples"] == 16
        and grads["ln"]["ci95"][0] <= grads["ln"]["variance"] <= grads["ln"]["ci95"][1]
    )
    report = (out / "report.md").read_text()
    assert "Verdict" in report and "Caveats" in report
    # the domain claim cites norm patching of the LN model against the base (its own probe folder)
    causal = record["claims"][2]["causal"]["ln"]
    patch = json.loads((out / "probes" / "patch-ln" / "patch.json").read_text())
    assert causal["gap"] == patch["gap"] and causal["accuracy"] == patch["accuracy"]
    domain = next(s for s in report.split("\n## ") if s.startswith("domain adaptation"))
    assert "**Causal evidence**" in domain and "](probes/patch-ln/patch_tokens.png)" in domain
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    assert record["provenance"]["seed"] == 0
    # each figure in its claim's section, Markdown rendered (no literal ** or backticks), contents, provenance
    sections = report.split("\n## ")
    similarity = next(s for s in sections if s.startswith("cross layer similarity"))
    assert "](probes/similarity-ln/similarity_cka.png)" in similarity
    assert "<nav>" in html and "**" not in html and "`" not in html and "<ul>" in html
    assert f"time_utc: {record['provenance']['time_utc']}" in report and "versions: lnprobe" in report
    # `lnprobe report` re-renders both files from claims.json alone, byte for byte
    before = {name: (out / name).read_bytes() for name in ("report.md", "report.html")}
    for name in before:
        (out / name).unlink()
    assert cli.main(["report", str(out)]) == 0
    assert {name: (out / name).read_bytes() for name in before} == before
    bad = ["claims", "--base", tiny_dir, "--ln", str(tmp_path / "ln"), "--full", str(full), "--data"]
    assert cli.main([*bad, str(data / "instruct.json"), "--model", "oops", "--out", str(tmp_path / "x")]) == 2
    assert cli.main([*bad, str(data / "instruct.json"), "--n", "2", "--out", str(tmp_path / "x")]) == 2
    assert cli.main([*bad, str(tmp_path / "none.json"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_pool_over_seeds():
    from lnprobe.claims.pool import pool

    one = pool([(0.5, (0.4, 0.6))])
    assert one["value"] == 0.5 and one["ci95"] == [0.4, 0.6] and one["seeds"] == 1
    three = pool([(0.4, None), (0.5, None), (0.6, None)])
    half = 4.303 * 0.1 / 3**0.5  # t(2) x sd / sqrt(3)
    assert three["value"] == pytest.approx(0.5) and three["ci95"] == pytest.approx([0.5 - half, 0.5 + half])


def test_claims_pool_several_seeds(tiny_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    data = write_synth(tmp_path / "data", SynthConfig(n=30, seed=3))
    make_delta(tiny_dir, "ln", tmp_path / "ln1")
    shutil.copytree(tmp_path / "ln1", tmp_path / "ln2")
    tensors = load_file(str(tmp_path / "ln2" / "delta.safetensors"))
    gen = torch.Generator().manual_seed(9)
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in tensors.items()},
              str(tmp_path / "ln2" / "delta.safetensors"))  # fmt: skip
    make_delta(tiny_dir, "full", tmp_path / "full")
    out = tmp_path / "claims"
    argv = ["claims", "--base", tiny_dir, "--ln", str(tmp_path / "ln1"), "--ln", str(tmp_path / "ln2")]
    argv += ["--full", str(tmp_path / "full"), "--data", str(data / "instruct.json"), "--out", str(out)]
    argv += ["--n", "8", "--batch-size", "4", "--bootstrap", "20"]
    assert cli.main(argv) == 0
    record = json.loads((out / "claims.json").read_text())
    sim = record["claims"][0]["numbers"]
    pooled = sim["ln (pooled)"]["cka"]
    assert pooled["seeds"] == 2
    assert pooled["value"] == pytest.approx((sim["ln"]["cka"]["value"] + sim["ln.2"]["cka"]["value"]) / 2)
    assert set(record["claims"][2]["numbers"]) == {"ln", "ln.2"}  # one LN-shift summary per seed
    assert "ln (pooled, log variance)" in record["claims"][1]["numbers"]
    assert "Verdict" in (out / "report.md").read_text()
    assert cli.main([*argv, "--ln-run", str(tmp_path)]) == 2  # one run for two LN seeds


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--margin", "cross_layer_similarity=-0.1"], "margin must be a finite number >= 0"),
        (["--margin", "gradient_variance=inf"], "margin must be a finite number >= 0"),
        (["--margin", "gradient_variance=nan"], "margin must be a finite number >= 0"),
        (["--margin", "speed=0.1"], "unknown claim"),
        (["--pair", "seed"], "a pooled test needs at least 2 LN and 2 full seeds"),
        (["--pair", "sideways"], "--pair 'sideways'"),
    ],
)
def test_claims_bad_margins_and_pairing_are_one_line_exit_2(tiny_dir, tmp_path, capsys, extra, message):
    data = write_synth(tmp_path / "data", SynthConfig(n=10, seed=3))
    out = tmp_path / "claims"
    argv = ["claims", "--base", tiny_dir, "--ln", tiny_dir, "--full", tiny_dir, "--data"]
    assert cli.main([*argv, str(data / "instruct.json"), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_pairing_by_training_seed(tmp_path):
    """Runs recording their seed pair by it whatever the order given; a mismatch falls back to order, and
    `--pair seed` refuses it."""
    from lnprobe.claims.config import ClaimsConfig
    from lnprobe.claims.pairing import pair_seeds, training_seed
    from lnprobe.errors import InputError

    def run(name, seed):
        path = tmp_path / name
        (path / "checkpoints" / "step-1").mkdir(parents=True)
        (path / "latest").write_text("step-1")
        (path / "lnprobe_config.json").write_text(json.dumps({"config": {"seed": seed}}))
        return str(path)

    ln = [run("ln-a", 1), run("ln-b", 0)]
    full = [run("full-a", 0), run("full-b", 1)]
    assert training_seed(ln[0]) == 1 and training_seed(str(tmp_path / "ln-a" / "checkpoints" / "step-1")) == 1
    cfg = ClaimsConfig(base="b", ln=tuple(ln), full=tuple(full), data="d", out="o")
    pairing = pair_seeds(cfg)
    assert pairing.pairs == [("ln.2", "full"), ("ln", "full.2")] and pairing.how == "paired by training seed"
    odd = ClaimsConfig(base="b", ln=tuple(ln), full=(full[0], run("full-c", 7)), data="d", out="o")
    assert pair_seeds(odd).pairs == [("ln", "full"), ("ln.2", "full.2")]
    assert pair_seeds(odd).how.startswith("paired by order")
    with pytest.raises(InputError, match="cannot be paired by training seed"):
        pair_seeds(ClaimsConfig(base="b", ln=tuple(ln), full=odd.full, data="d", out="o", pair="seed"))
    three = ClaimsConfig(base="b", ln=(*ln, run("ln-c", 2)), full=tuple(full), data="d", out="o")
    assert pair_seeds(three).pairs is None and "cannot be paired" in pair_seeds(three).how
    assert (
        pair_seeds(
            ClaimsConfig(base="b", ln=tuple(ln), full=tuple(full), data="d", out="o", pair="none")
        ).pairs
        is None
    )
