"""Parameter accounting at the paper's shapes, against analytic counts and against measured memory."""

import copy
import json

import pytest
import torch
from torch import nn

from lnprobe.models import build_from_config, resolve_config, resolve_sites
from lnprobe.params import GROUPS, estimate_memory, params_table, regime_report
from lnprobe.regimes import REGIMES, RegimeOptions, apply_regime


def _meta(preset):
    config = resolve_config(preset)
    return lambda: build_from_config(config)


def test_paper_numbers_at_llava_7b_shapes():
    """LLaVA-7B shapes, linear connector, vocab 32000: ln-simp 266,240 (0.0038 %), ln 3.78 %."""
    reports = {r.regime: r for r in params_table(_meta("llava-7b"), ["ln-simp", "ln"])}
    assert reports["ln-simp"].trainable == 266_240 == 32 * 2 * 4096 + 4096
    assert round(reports["ln-simp"].percent, 4) == 0.0038
    assert reports["ln"].percent == pytest.approx(3.78, abs=0.01)


def test_13b_norm_count_matches_formula():
    (report,) = params_table(_meta("llava-13b"), ["ln-simp"])
    assert report.trainable == 40 * 2 * 5120 + 5120


def test_meta_models_allocate_nothing():
    model = _meta("llava-1.5-13b")()
    assert all(p.device.type == "meta" for p in model.parameters())


def test_groups_partition_the_trainable_set():
    for report in params_table(_meta("tiny"), REGIMES.names(), RegimeOptions(lora_rank=4)):
        assert set(report.by_group) == set(GROUPS)
        assert sum(report.by_group.values()) == report.trainable
        assert report.by_group["vision"] == 0 and report.by_group["other"] == 0


def test_lora_count_equals_analytic_formula():
    """r * (in + out) for every linear layer of every decoder block, plus the connector."""
    rank = 8
    model = _meta("llava-7b")()
    sites = resolve_sites(model)
    linears = [
        m
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and any(n.startswith(layer + ".") for layer in sites.layers)
    ]
    connector = sum(p.numel() for p in model.get_submodule(sites.connector).parameters())
    expected = sum(rank * (m.in_features + m.out_features) for m in linears)
    report = regime_report(model, "lora", RegimeOptions(lora_rank=rank))
    assert report.by_group["lora"] == expected
    assert report.trainable == expected + connector
    assert report.total == sum(p.numel() for p in _meta("llava-7b")().parameters())  # base denominator


def _measured_bytes(model, optimizer) -> dict[str, int]:
    def size(t):
        return t.numel() * t.element_size()

    params = list(model.parameters())
    states = [
        v for s in optimizer.state.values() for k, v in s.items() if k != "step"
    ]  # step: scalar counter
    return {
        "frozen_weights": sum(size(p) for p in params if not p.requires_grad),
        "trainable_weights": sum(size(p) for p in params if p.requires_grad),
        "gradients": sum(size(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(size(v) for v in states),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("regime", ["ln", "ln-simp", "lora", "full"])
def test_memory_estimate_equals_measured_training_state(tiny, batch, regime, dtype):
    """After a real AdamW step (trainable params in fp32, the rest in `dtype`), the tensors held equal
    the estimate byte for byte."""
    model = tiny[0]
    report = regime_report(copy.deepcopy(model), regime, RegimeOptions(lora_rank=4), dtype)
    applied = apply_regime(model.to(dtype), regime, RegimeOptions(lora_rank=4))
    for p in applied.model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # fp32 master copies
    optimizer = torch.optim.AdamW([p for p in applied.model.parameters() if p.requires_grad])
    batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        applied.model(**batch).loss.backward()
    optimizer.step()
    measured = _measured_bytes(applied.model, optimizer)
    m = report.memory
    assert measured == {
        "frozen_weights": m.frozen_weights,
        "trainable_weights": m.trainable_weights,
        "gradients": m.gradients,
        "optimizer": m.optimizer,
    }


def test_estimate_memory_scales_with_dtype():
    fp32, bf16 = estimate_memory(10, 3, torch.float32), estimate_memory(10, 3, torch.bfloat16)
    assert fp32.frozen_weights == 2 * bf16.frozen_weights == 40
    assert fp32.total - fp32.frozen_weights == bf16.total - bf16.frozen_weights == 3 * 16


def _analytic_lora_terms(preset: str) -> dict[str, int]:
    """Independent counts from the model's config alone: LoRA's parameters per unit of rank (r x (in + out)
    for q, k, v, o, gate, up, down of every decoder layer), and the non-adapter sets."""
    config = resolve_config(preset)
    text, vision = config.text_config, config.vision_config
    d, f, layers = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    kv = d // text.num_attention_heads * text.num_key_value_heads
    per_layer = (d + d) + 2 * (d + kv) + (d + d) + 2 * (d + f) + (f + d)
    embed = text.vocab_size * d
    return {
        "per_rank": layers * per_layer,
        "connector": vision.hidden_size * d + d,  # the paper's linear connector
        "embed_head": 2 * embed,  # untied
        "norms": (2 * layers + 1) * d,
    }


def _solve(ln: int, fixed: int, per_rank: int, target_pct: float) -> float:
    return (ln / (1 + target_pct / 100) - fixed) / per_rank


def test_lora_comparison_against_analytic_counts_on_tiny():
    from lnprobe.params import lora_comparison

    t = _analytic_lora_terms("tiny")
    ln = t["norms"] + t["connector"] + t["embed_head"]
    for regime, fixed in (("lora", t["connector"]), ("lora-paper", t["connector"] + t["embed_head"])):
        target = 100.0 * (ln - (fixed + 5.3 * t["per_rank"])) / (fixed + 5.3 * t["per_rank"])  # rank 5.3
        c = lora_comparison(_meta("tiny"), regime, rank=8, target_pct=target)
        assert (c.ln, c.per_rank, c.fixed) == (ln, t["per_rank"], fixed)
        assert c.lora == fixed + 8 * t["per_rank"]
        assert c.solved_rank == pytest.approx(5.3) == pytest.approx(_solve(ln, fixed, t["per_rank"], target))
        assert c.matching_rank == 5 and c.matching_lora == fixed + 5 * t["per_rank"]
        assert c.pct == pytest.approx(100.0 * (ln - c.lora) / c.lora)
    # LN = LoRA needs rank norms / per_rank < 1 here: no rank reproduces it
    assert t["norms"] < t["per_rank"]
    unreachable = lora_comparison(_meta("tiny"), "lora-paper", rank=4, target_pct=0.0)
    assert unreachable.solved_rank is None and unreachable.matching_rank is None


@pytest.mark.slow
def test_params_13b_prints_both_readings_and_the_paper_rank(capsys):
    """`lnprobe params llava-13b`: LN vs LoRA r32 is +155.6 % (adapters only) and -27.2 % (the paper's
    reading); the rank for the paper's -41.9 % is solved (145.3 and 61.6) and the nearest integer rank
    counted, all as the analytic count from the config says."""
    from lnprobe import cli

    assert cli.main(["params", "llava-13b", "-r", "ln", "-r", "lora", "-r", "lora-paper", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    t = _analytic_lora_terms("llava-13b")
    ln = t["norms"] + t["connector"] + t["embed_head"]
    readings = {c["lora_regime"]: c for c in record["ln_vs_lora"]}
    assert [c["reading"] for c in record["ln_vs_lora"]] == ["adapters only", "paper (Figure 1)"]
    for regime, fixed, rank, pct in (
        ("lora", t["connector"], 145, -41.77),
        ("lora-paper", t["connector"] + t["embed_head"], 62, -42.07),
    ):
        c = readings[regime]
        assert c["ln"] == ln == 333_342_720
        assert (c["per_rank"], c["fixed"]) == (t["per_rank"], fixed)
        assert c["lora"] == fixed + 32 * t["per_rank"]
        assert c["solved_rank"] == pytest.approx(_solve(ln, fixed, t["per_rank"], -41.9), rel=1e-12)
        assert c["matching_rank"] == rank and c["matching_lora"] == fixed + rank * t["per_rank"]
        assert c["matching_pct"] == pytest.approx(pct, abs=0.01)
        for other in (rank - 1, rank + 1):  # the nearest integer rank
            lora = fixed + other * t["per_rank"]
            assert abs(100 * (ln - lora) / lora + 41.9) >= abs(c["matching_pct"] + 41.9)
    assert readings["lora"]["pct"] == pytest.approx(155.59, abs=0.01)  # LN trains ~2.6x more
    assert readings["lora-paper"]["pct"] == pytest.approx(-27.23, abs=0.01)


def test_params_prints_the_comparison_table(capsys):
    """The text output of `params` carries the comparison; on tiny shapes too a rank reproduces -41.9 %."""
    from lnprobe import cli

    assert cli.main(["params", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "adapters only" in out and "paper (Figure 1)" in out and "rank for -41.9 %" in out
    t = _analytic_lora_terms("tiny")
    ln = t["norms"] + t["connector"] + t["embed_head"]
    for fixed in (t["connector"], t["connector"] + t["embed_head"]):
        solved = _solve(ln, fixed, t["per_rank"], -41.9)
        assert f"({solved:.1f}):" in out


def test_sharded_estimate_against_a_count_by_name(tiny):
    """Per process over 2: the state halved (rounded up) + the root unit and 2 x the largest layer unit in
    bf16, the units counted here from parameter names (every `...layers.<i>.` prefix is one unit)."""
    import re

    from lnprobe.params import ShardedEstimate

    report = regime_report(copy.deepcopy(tiny[0]), "ln", None, torch.bfloat16, shard=2)
    units: dict[str, int] = {}
    root = 0
    for name, p in tiny[0].named_parameters():
        match = re.match(r"(.*\.layers\.\d+)\.", name)
        if match:
            units[match.group(1)] = units.get(match.group(1), 0) + p.numel()
        else:
            root += p.numel()
    assert len(units) == 4 + 2  # tiny: 4 decoder + 2 vision layers (a check of the pattern)
    gathered = (root + 2 * max(units.values())) * 2
    assert report.sharded == ShardedEstimate(2, -(-report.memory.total // 2), gathered)
    assert regime_report(copy.deepcopy(tiny[0]), "ln", None, torch.bfloat16).sharded is None


def test_params_shard_prints_the_per_process_table(capsys):
    from lnprobe import cli

    assert cli.main(["params", "tiny", "-r", "ln", "--shard", "2"]) == 0
    assert "per process with --shard fsdp over 2 processes" in capsys.readouterr().out
    assert cli.main(["params", "tiny", "-r", "ln", "--shard", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--shard 0: must be >= 1 (processes)") and len(err.splitlines()) == 1
    assert cli.main(["params", "tiny", "-r", "ln", "--shard", "2", "--json"]) == 0
    sharded = json.loads(capsys.readouterr().out)["reports"][0]["sharded"]
    assert sharded["processes"] == 2 and sharded["total"] == sharded["state"] + sharded["gathered"]
