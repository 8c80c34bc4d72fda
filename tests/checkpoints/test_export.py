"""`lnprobe export --peft`: an ln / ln-simp delta becomes a PEFT adapter with identical logits."""

import warnings

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText

from lnprobe import cli
from lnprobe.checkpoints.delta import DeltaInfo, fingerprint, save_delta
from lnprobe.checkpoints.export import export_peft
from lnprobe.errors import InputError
from lnprobe.models import TinyConfig, load, save_tiny
from lnprobe.regimes import apply_regime
from tests.conftest import image_batch


def make_delta(base, regime, out):
    applied = apply_regime(load(base).model, regime)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in applied.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    tensors = {n: p for n, p in applied.model.named_parameters() if p.requires_grad}
    save_delta(out, tensors, DeltaInfo(base=str(base), base_fingerprint=fingerprint(base), regime=regime))


def logits(model, batch):
    with torch.no_grad():
        return model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize("regime", ["ln-simp", "ln"])
@pytest.mark.parametrize("connector", ["linear", "mlp2x_gelu"])
def test_export_gives_identical_logits(tmp_path, regime, connector):
    base = save_tiny(tmp_path / "base", TinyConfig(connector=connector))
    make_delta(base, regime, tmp_path / "delta")
    export_peft(tmp_path / "delta", tmp_path / "peft")
    tuned = load(tmp_path / "delta")
    batch = image_batch(tuned.processor)
    expected = logits(tuned.model, batch)
    # the native connector needs no lnprobe at all; the linear one needs lnprobe's loader for the base
    plain = (
        AutoModelForImageTextToText.from_pretrained(base) if connector == "mlp2x_gelu" else load(base).model
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = PeftModel.from_pretrained(plain, tmp_path / "peft")
    torch.testing.assert_close(logits(peft_model, batch), expected, rtol=0, atol=0)
    torch.testing.assert_close(logits(load(tmp_path / "peft").model, batch), expected, rtol=0, atol=0)
    assert not torch.equal(logits(load(base).model, batch), expected)


def test_export_refuses_other_regimes(tmp_path, tiny_dir, capsys):
    make_delta(tiny_dir, "attn-qv", tmp_path / "delta")
    with pytest.raises(InputError, match="regime 'attn-qv' has no PEFT LN-tuning form"):
        export_peft(tmp_path / "delta", tmp_path / "peft")
    assert cli.main(["export", tiny_dir, "--peft", str(tmp_path / "x")]) == 2
    assert "not an lnprobe delta" in capsys.readouterr().err
