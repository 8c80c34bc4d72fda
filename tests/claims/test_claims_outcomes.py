"""Planted controls for the outcomes beyond supported / refuted (`lnprobe.claims.controls`): over two seeds,
no effect beyond δ (LN = full = base) and inconclusive (a holding seed with a failing one); and a planted
attention sink that must not decide the similarity verdict. A module of its own, so that its claims runs
go to another test worker than test_claims_controls.py's."""

import json

import pytest

from lnprobe import cli
from lnprobe.claims import controls
from lnprobe.claims.verdicts import INCONCLUSIVE, NO_EFFECT, REFUTED, SUPPORTED
from lnprobe.data.synth import SynthConfig, write_synth
from tests.claims.test_claims_controls import CLAIMS, FIGURES, _claim


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    """{holds: Scenario} over one planted base, and the data file the claims read."""
    root = tmp_path_factory.mktemp("outcomes")
    base = controls.build_base(root / "base")
    data = write_synth(root / "data", SynthConfig(n=30, seed=3)) / "instruct.json"
    built = {holds: controls.build_scenario(base, root / f"holds-{holds}", holds) for holds in (True, False)}
    return built, data, root


def _judge(argv: list[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:  # figures do not enter verdicts (speed)
        for module, name in FIGURES:
            patch.setattr(f"{module}.{name}", lambda *args, **kwargs: [])
        assert cli.main([*argv, "--n", "16", "--batch-size", "4", "--bootstrap", "50", "--no-patch"]) == 0


@pytest.fixture(scope="module")
def seeded_runs(scenarios):
    """{outcome: claims record} over two seeds each: the null scenario twice (no effect beyond δ), and the
    holding seed with the failing one (inconclusive)."""
    built, data, root = scenarios
    nulls = [controls.build_null_scenario(built[True].base, root / f"null-{s}", seed=s) for s in (0, 1)]
    records = {}
    for outcome, seeds in ((NO_EFFECT, nulls), (INCONCLUSIVE, [built[True], built[False]])):
        out = root / outcome.split()[0]
        _judge(controls.seeds_argv(seeds, data, out))
        records[outcome] = json.loads((out / "claims.json").read_text())
    return records


@pytest.mark.parametrize("outcome", [NO_EFFECT, INCONCLUSIVE], ids=["no-effect", "inconclusive"])
@pytest.mark.parametrize("claim_id", CLAIMS)
def test_planted_outcome_over_two_seeds(seeded_runs, claim_id, outcome):
    claim = _claim(seeded_runs[outcome], claim_id)
    test = claim["test"]
    assert claim["verdict"] == outcome and test["unit"] == "seeds" and test["units"] == 2
    assert len(claim["per_seed"]) == 2 and test["delta"] == claim["margin"]["delta"] > 0
    if outcome == NO_EFFECT:  # LN = full = base by construction: every difference is exactly 0
        assert [p["difference"] for p in claim["per_seed"]] == [0.0, 0.0]
        assert test["ci90"] == [0.0, 0.0] and test["p_equivalence"] == 0.0
    else:  # one seed holds, one fails: opposite signs, and the power statement asks for more seeds
        first, second = (p["difference"] for p in claim["per_seed"])
        assert first < 0 < second
        assert test["mde"] > claim["margin"]["delta"] and test["units_for_delta"] > 2
        assert test["p_permutation"] == 1.0  # 2 seeds of opposite sign: every flip is as extreme
    pairing = "paired by order" if claim_id != "domain_adaptation" else None
    assert claim["pairing"] is None or claim["pairing"].startswith(pairing or "")


@pytest.fixture(scope="module")
def sink_runs(scenarios):
    """The failing scenario whose full model's first token is a planted attention sink, judged with the
    sink rule (default) and with --keep-sink-tokens: {keep: (claims record, output dir)}."""
    from lnprobe.models import load

    built, data, root = scenarios
    base = built[False].base
    bos = load(base).processor.tokenizer.bos_token_id
    scenario = controls.build_scenario(base, root / "sink", holds=False, sink_token=bos)
    runs = {}
    for keep in (False, True):
        out = root / f"claims-sink-{keep}"
        _judge([*scenario.argv(data, out), *(["--keep-sink-tokens"] if keep else [])])
        runs[keep] = (json.loads((out / "claims.json").read_text()), out)
    return runs


def test_a_planted_sink_does_not_decide_the_similarity_verdict(sink_runs):
    """Kept, the sink makes the full model's layers look alike (CKA ~1) and flips the failing claim to
    supported; left out by default, the verdict is the one without a sink: refuted."""
    (found, out), (kept, _) = sink_runs[False], sink_runs[True]
    assert _claim(found, "cross_layer_similarity")["verdict"] == REFUTED
    with_sink = _claim(kept, "cross_layer_similarity")
    assert with_sink["verdict"] == SUPPORTED and with_sink["numbers"]["full"]["cka"]["value"] > 0.99
    sinks = json.loads((out / "probes" / "similarity-full" / "similarity.json").read_text())["sink_tokens"]
    assert sinks["excluded"] and sinks["count"] == 16  # every example's first token, and nothing else
    assert {t["position"] for t in sinks["tokens"]} == {0}
    ln = json.loads((out / "probes" / "similarity-ln" / "similarity.json").read_text())["sink_tokens"]
    assert ln["count"] == 0  # the LN model has no sink
