"""`--grad-ckpt auto`: the profile's predicted peak against the peak torch's CPU memory profiler measures
for every checkpointing pattern, the plan's choice on planted budgets, and training with it."""

import json

import pytest

from lnprobe import cli
from lnprobe.errors import InputError
from lnprobe.models import resolve_sites
from lnprobe.regimes import RegimeOptions, apply_regime
from lnprobe.train import TrainConfig, train
from lnprobe.train import memory as M
from lnprobe.train.config import parse_bytes
from lnprobe.train.loss import loss_sum
from tests.conftest import image_batch
from tests.train.test_train import cfg, synth  # noqa: F401  (fixture)


def prepared(tiny, regime):
    model, processor = tiny
    applied = apply_regime(model, regime, RegimeOptions(4, None, 0.0))
    for p in applied.model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    applied.model.train()
    return applied.model, resolve_sites(applied.model), image_batch(processor, n=8)


@pytest.mark.parametrize("regime", ["ln", "full"])
def test_predicted_peak_bounds_the_measured_peak_of_every_pattern(tiny, regime):
    model, sites, batch = prepared(tiny, regime)
    profile_ = M.profile_step(model, sites, lambda: loss_sum(model, sites, batch)[0])
    n = len(sites.layers)
    assert n == 4 and all(k > i > 0 for k, i in zip(profile_.kept, profile_.inputs, strict=True))
    static = profile_.weights + profile_.moments  # resident before the step; the profiler sees the rest
    ratios = []
    for m in range(n + 1):
        M.checkpoint_layers(model, sites, tuple(range(m)))
        flags = [model.get_submodule(name).gradient_checkpointing for name in sites.layers]
        assert flags == [i < m for i in range(n)]

        def step():
            loss_sum(model, sites, batch)[0].backward()

        step()  # warm-up: lazily built buffers
        model.zero_grad(set_to_none=True)
        ratios.append((profile_.peak(tuple(range(m))) - static) / M.measured_peak(step))
        model.zero_grad(set_to_none=True)
    # never under (the plan must not overrun its budget), and not wildly over
    assert all(0.97 <= r <= 1.5 for r in ratios), ratios


def test_checkpointing_fewer_layers_is_predicted_to_need_more(tiny):
    model, sites, batch = prepared(tiny, "ln")
    p = M.profile_step(model, sites, lambda: loss_sum(model, sites, batch)[0])
    peaks = [p.peak(tuple(range(m))) for m in range(len(sites.layers) + 1)]
    assert all(a > b for a, b in zip(peaks[:-2], peaks[1:-1], strict=True))
    assert peaks[-1] == peaks[-2]  # the top layer's turn comes first: checkpointing it saves nothing


def test_plan_picks_the_fewest_layers_that_fit_planted_budgets():
    p = M.MemoryProfile(
        weights=1000,
        moments=0,
        grads_top=0,
        grads_bottom=0,
        grads=(0, 0, 0, 0),
        outside=0,
        kept=(400, 400, 400, 400),
        inputs=(40, 40, 40, 40),
    )
    # by hand: m = 0 peaks at the top layer's turn, 3 * 400 + 1.75 * 400 = 1900 (+1000 weights)
    assert p.peak(()) == 1000 + 1200 + 700
    assert p.peak((0, 1)) == 1000 + 40 + 40 + 400 + 700
    for m in range(4):
        budget = int(p.peak(tuple(range(m))) * M.MARGIN) + 1
        assert M.plan(p, budget).layers == tuple(range(m))
    with pytest.raises(InputError, match="even with every decoder layer checkpointed"):
        M.plan(p, 1500)


def test_parse_bytes():
    assert parse_bytes("40GiB") == 40 * 2**30 and parse_bytes("512 MB") == 512 * 10**6
    assert parse_bytes("1e9") == 10**9 and parse_bytes("2kib") == 2048
    for bad in ("", "lots", "-3GB", "0", "1e999", "4 furlongs"):
        with pytest.raises(InputError, match="--max-memory"):
            parse_bytes(bad)


def test_old_boolean_configs_still_read():
    assert TrainConfig(data="x", grad_ckpt=False).grad_ckpt == "off"
    assert TrainConfig(data="x", grad_ckpt=True).grad_ckpt == "on"


def test_auto_checkpointing_trains_the_same_and_records_its_plan(synth, tmp_path, capsys):  # noqa: F811
    off = train(cfg(synth, tmp_path / "off", regime="ln", max_steps=2, grad_ckpt="off"))
    code = cli.main(
        [
            "train",
            "--data",
            str(synth / "instruct.json"),
            "--out",
            str(tmp_path / "auto"),
            "--regime",
            "ln",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--lr",
            "0.01",
            "--no-progress",
            "--grad-ckpt",
            "auto",
            "--max-memory",
            "1GiB",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "checkpointing 0 of 4 decoder layers" in printed  # 1 GiB: nothing to checkpoint
    plan = json.loads((tmp_path / "auto" / M.PLAN_FILE).read_text())
    assert plan["layers"] == [] and plan["budget"] == 2**30 and plan["predicted_peak"] > 0
    # a budget just above the all-checkpointed prediction forces checkpointing, which changes no number
    need = M.MemoryProfile(**{k: tuple(v) if isinstance(v, list) else v for k, v in plan["profile"].items()})
    budget = int(need.peak((0, 1, 2)) * M.MARGIN) + 1
    tight = train(
        cfg(synth, tmp_path / "tight", regime="ln", max_steps=2, grad_ckpt="auto", max_memory=str(budget))
    )
    chosen = json.loads((tmp_path / "tight" / M.PLAN_FILE).read_text())["layers"]
    assert len(chosen) >= 1
    assert tight.final_loss == pytest.approx(off.final_loss, rel=1e-6)
    with pytest.raises(InputError, match="even with every decoder layer checkpointed"):
        train(
            cfg(synth, tmp_path / "tiny-budget", regime="ln", max_steps=2, grad_ckpt="auto", max_memory="1KB")
        )
    assert not (tmp_path / "tiny-budget").exists()  # refused before anything was written


def test_one_example_scaled_predicts_the_whole_batch(tiny):
    """The fallback when a whole unchecked forward does not fit the GPU: activations grow linearly."""
    model, sites, batch = prepared(tiny, "ln")
    whole = M.profile_step(model, sites, lambda: loss_sum(model, sites, batch)[0])
    one = {k: v[:1] for k, v in batch.items()}
    scaled = M.profile_step(model, sites, lambda: loss_sum(model, sites, one)[0]).scaled(8)
    assert scaled.kept[1:] == whole.kept[1:] and scaled.inputs == whole.inputs
    # layer 0 also keeps the rotary tables, one per batch, which scaling counts 8 times: over, not under
    assert whole.kept[0] < scaled.kept[0] < 1.05 * whole.kept[0]
    assert whole.peak(()) <= scaled.peak(()) < 1.02 * whole.peak(())
