"""Offline `lnprobe gradvar`: per-example gradients of any checkpoint, frozen groups included, checked
against gradients computed one example at a time with transformers' own loss."""

import json

import pytest
import torch

from lnprobe import cli
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import load
from lnprobe.probes import ProbeInputs
from lnprobe.probes.gradvar.config import GradVarConfig
from lnprobe.probes.gradvar.run import _Accumulator, run_gradvar, select_groups
from lnprobe.probes.inputs import probe_batches
from tests.checkpoints.test_export import make_delta


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("synth") / "data", SynthConfig(n=30, seed=1))


def _cfg(ckpt, data, out, n=32, batch_size=4, **kw):
    inputs = ProbeInputs(data=str(data), n=n, batch_size=batch_size, progress=False)
    return GradVarConfig(ckpt=str(ckpt), inputs=inputs, out=str(out), **kw)


def test_per_example_statistics_do_not_depend_on_batching(tiny_dir, synth, tmp_path):
    rec = {
        b: run_gradvar(
            _cfg(tiny_dir, synth / "instruct.json", tmp_path / f"b{b}", n=8, batch_size=b, activations=True)
        )
        for b in (1, 3, 8)
    }
    for b in (3, 8):
        assert rec[b].samples == rec[1].samples == 8
        for group, row in rec[1].groups.items():
            for key in ("variance", "mean_sq", "noise_scale"):
                assert rec[b].groups[group][key] == pytest.approx(row[key], rel=1e-4), (b, group, key)
        for site, row in rec[1].activations.items():
            assert rec[b].activations[site]["count"] == row["count"]  # every real token, once
            assert rec[b].activations[site]["variance"] == pytest.approx(row["variance"], rel=1e-4)


def _hf_example_grads(model, sites, batch, groups):
    """Per-example gradients from transformers' loss on each example alone (padding stripped)."""
    out = []
    for e in range(len(batch["input_ids"])):
        keep = batch["attention_mask"][e].bool()
        one = {k: v[e : e + 1][:, keep] for k, v in batch.items() if k != "pixel_values"}
        if "pixel_values" in batch:
            one["pixel_values"] = batch["pixel_values"][e : e + 1]
        model.zero_grad(set_to_none=True)
        model(**one).loss.backward()
        named = dict(model.named_parameters())
        out.append(
            {g: torch.cat([named[n].grad.reshape(-1) for n, _ in members]) for g, members in groups.items()}
        )
    return out


def test_statistics_match_an_independent_per_example_computation(tmp_path, tiny_dir, synth):
    make_delta(tiny_dir, "ln-simp", tmp_path / "delta")  # an LN-simp model: attention / MLP were frozen
    loaded = load(tmp_path / "delta")
    model, sites = loaded.model.eval(), loaded.sites
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = select_groups(model, sites, ("norms", "attn", "mlp"))
    assert any(g.startswith("attn.") for g in groups) and any(g.startswith("mlp.") for g in groups)
    cfg = _cfg(tmp_path / "delta", synth / "eval.json", tmp_path / "x", n=6, batch_size=3)
    batches = probe_batches(cfg.inputs, loaded.processor)
    acc = _Accumulator(groups, sites, cfg)
    for batch in batches:
        acc.add(batch, model)
    # nothing was updated
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    samples = [s for batch in batches for s in _hf_example_grads(model, sites, batch, groups)]
    for group in groups:
        g = torch.stack([s[group] for s in samples]).double()  # [6, p]
        variance = g.var(0).mean()  # two-pass, unbiased, per element, averaged
        summary = acc.stats.summary()[group]
        assert summary.count == 6
        assert summary.variance == pytest.approx(float(variance), rel=1e-4)
        assert summary.mean_sq == pytest.approx(float(g.square().sum(1).mean() / g.shape[1]), rel=1e-4)


def test_activation_gradients_match_backward_hooks(tiny_dir, synth):
    loaded = load(tiny_dir)
    model, sites = loaded.model.eval(), loaded.sites
    groups = select_groups(model, sites, ("norms",))
    cfg = _cfg(tiny_dir, synth / "eval.json", "unused", n=2, batch_size=2, activations=True)
    (batch,) = probe_batches(cfg.inputs, loaded.processor)
    acc = _Accumulator(groups, sites, cfg)
    acc.add(batch, model)
    # reference: each example alone, transformers' loss, gradients read by tensor hooks on layer outputs
    rows = {i: [] for i in range(len(sites.layers))}
    for e in range(2):
        keep = batch["attention_mask"][e].bool()
        one = {k: v[e : e + 1][:, keep] for k, v in batch.items() if k != "pixel_values"}
        one["pixel_values"] = batch["pixel_values"][e : e + 1]
        hooks = []
        for i, name in enumerate(sites.layers):

            def grab(m, a, o, i=i):
                (o[0] if isinstance(o, tuple) else o).register_hook(lambda g: rows[i].append(g[0].detach()))

            hooks.append(model.get_submodule(name).register_forward_hook(grab))
        model(**one).loss.backward()
        for h in hooks:
            h.remove()
    for i in rows:
        ref = torch.cat(rows[i]).double()
        got = acc.act_stats.summary()[f"layer.{i}"]
        assert got.count == ref.shape[0]
        assert got.variance == pytest.approx(float(ref.var(0).mean()), rel=1e-4)


def test_batch_unit_counts_batches_and_cli_writes_outputs(tiny_dir, synth, tmp_path):
    out = tmp_path / "gv"
    code = cli.main(
        ["gradvar", tiny_dir, "--data", str(synth / "instruct.json"), "--out", str(out), "--n", "8"]
        + ["--batch-size", "2", "--unit", "batch", "-g", "norms", "-g", "mlp"]
    )
    assert code == 0
    record = json.loads((out / "gradvar.json").read_text())
    assert record["samples"] == 4
    assert {r["kind"] for r in record["groups"].values()} == {"norms", "mlp"}
    assert record["kinds"]["norms"]["variance_ci95"] is not None
    lo, hi = record["kinds"]["norms"]["variance_ci95"]
    assert lo <= hi
    for name in ("gradvar.csv", "gradvar.png", "gradvar.html", "gradvar_trace.safetensors", "plotly.min.js"):
        assert (out / name).is_file(), name
    assert record["provenance"]["seed"] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--unit", "token"], "unknown --unit"),
        (["-g", "vision"], "unknown --group"),
        (["--n", "1"], "1 gradient sample(s); a variance needs at least 2"),
        (["--data", "nope.json"], "nope.json"),
    ],
)
def test_bad_input_exits_2(tiny_dir, synth, tmp_path, capsys, args, message):
    out = tmp_path / "gv"
    argv = ["gradvar", tiny_dir, "--data", str(synth / "eval.json"), "--out", str(out)] + args
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_group_names_cover_trainable_sets(tiny):
    model, _ = tiny
    from lnprobe.models import resolve_sites

    sites = resolve_sites(model)
    kinds = {sites.group_of(n, per_layer=True) for n, _ in model.named_parameters()}
    assert {"norms.0", "attn.0", "mlp.0", "final_norm", "connector", "embeddings", "head"} <= kinds


def test_train_flag_records_gradient_statistics(tiny_dir, synth, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--model", tiny_dir, "--regime", "ln-simp", "--data", str(synth / "instruct.json")]
    argv += ["--out", str(run), "--max-steps", "4", "--batch-size", "2", "--grad-accum", "2"]
    assert cli.main(argv + ["--gradvar-every", "2", "--no-progress"]) == 0
    lines = [json.loads(x) for x in (run / "gradvar.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 3] and lines[-1]["since_step"] == 0
    assert lines[-1]["groups"]["norms.0"]["count"] == 4  # 2 recorded steps x 2 micro-batches
    assert cli.main(argv + ["--gradvar-every", "-1"]) == 2
