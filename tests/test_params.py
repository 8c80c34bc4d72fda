"""Parameter accounting at the paper's shapes, against analytic counts and against measured memory."""

import copy

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
