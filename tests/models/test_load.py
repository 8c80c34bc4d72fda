"""`load()` on HF checkpoint dirs, PEFT adapters (LoRA, LN tuning) and lnprobe deltas, and its errors."""

import json
import shutil
import warnings

import pytest
import torch
from peft import LNTuningConfig, LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText, LlavaProcessor

from lnprobe.checkpoints.delta import DELTA_FILE, DeltaInfo, fingerprint, read_delta, save_delta
from lnprobe.errors import InputError
from lnprobe.models import TinyConfig, build_tiny, checkpoint_kind, load, resolve_config, save_tiny
from lnprobe.models.connector import LinearConnector
from lnprobe.regimes import RegimeOptions, apply_regime
from tests.conftest import image_batch


def logits(model, batch):
    model.eval()  # PEFT's get_peft_model leaves models in train mode (LoRA dropout on)
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def perturb(model, names, seed=1, scale=0.1):
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.randn(params[n].shape, generator=gen) * scale)


def test_hf_dir_round_trip_is_bitwise(tiny_dir):
    loaded = load(tiny_dir)
    fresh, _ = build_tiny(TinyConfig(seed=0))
    assert loaded.kind == "hf"
    assert isinstance(loaded.model.model.multi_modal_projector, LinearConnector)
    a, b = fresh.state_dict(), loaded.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(loaded.processor, LlavaProcessor)
    batch = image_batch(loaded.processor, n=2)
    image_id = loaded.processor.tokenizer.convert_tokens_to_ids("<image>")
    assert ((batch["input_ids"] == image_id).sum(1) == TinyConfig().image_tokens).all()  # 16 per row
    torch.testing.assert_close(logits(loaded.model, batch), logits(fresh, batch), rtol=0, atol=0)


def test_native_connector_loads_in_plain_transformers(tmp_path):
    path = save_tiny(tmp_path / "mlp", TinyConfig(connector="mlp2x_gelu"))
    ours = load(path).model
    theirs = AutoModelForImageTextToText.from_pretrained(path)
    batch = image_batch(load(path).processor)
    torch.testing.assert_close(logits(ours, batch), logits(theirs, batch), rtol=0, atol=0)


def test_dtype_option(tiny_dir):
    assert load(tiny_dir, dtype="bf16").model.dtype == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype 'fp8'"):
        load(tiny_dir, dtype="fp8")


def _save_adapter(base_dir, config, out, trained_names_fn):
    base = load(base_dir).model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(base, config)
    perturb(peft_model, trained_names_fn(peft_model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Setting save_embedding_layers to True" for LN tuning
        peft_model.save_pretrained(out)
    return peft_model


def test_peft_lora_adapter(tiny_dir, tmp_path):
    cfg = LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False)
    peft_model = _save_adapter(tiny_dir, cfg, tmp_path / "lora", lambda m: [])
    assert checkpoint_kind(str(tmp_path / "lora")) == "peft"
    loaded = load(tmp_path / "lora")
    assert loaded.kind == "peft" and loaded.base == tiny_dir
    batch = image_batch(loaded.processor)
    expected = logits(peft_model, batch)
    torch.testing.assert_close(logits(loaded.model, batch), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(logits(load(tiny_dir).model, batch), expected)
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())  # merged by default


def test_peft_ln_tuning_adapter(tiny_dir, tmp_path):
    def norm_copies(m):
        return [n for n, _ in m.named_parameters() if "ln_tuning_layers" in n and "layernorm" in n]

    peft_model = _save_adapter(tiny_dir, LNTuningConfig(), tmp_path / "ln", norm_copies)
    loaded = load(tmp_path / "ln")
    batch = image_batch(loaded.processor)
    torch.testing.assert_close(logits(loaded.model, batch), logits(peft_model, batch))
    tuned = peft_model.get_submodule("base_model.model.model.language_model.layers.0.input_layernorm")
    assert torch.equal(
        loaded.model.model.language_model.layers[0].input_layernorm.weight,
        tuned.ln_tuning_layers["default"].weight,
    )


def test_adapter_base_override_and_missing_base(tiny_dir, tmp_path):
    cfg = LoraConfig(r=2, target_modules=r".*language_model.*\.q_proj")
    _save_adapter(tiny_dir, cfg, tmp_path / "a", lambda m: [])
    meta = tmp_path / "a" / "adapter_config.json"
    data = json.loads(meta.read_text())
    data["base_model_name_or_path"] = str(tmp_path / "gone")
    meta.write_text(json.dumps(data))
    with pytest.raises(
        InputError, match=r"adapter_config.json: base model '.*gone' not found \(pass --base\)"
    ):
        load(tmp_path / "a")
    assert load(tmp_path / "a", base=tiny_dir).base == tiny_dir


def test_adapter_without_safetensors_is_refused(tiny_dir, tmp_path):
    cfg = LoraConfig(r=2, target_modules=r".*language_model.*\.q_proj")
    _save_adapter(tiny_dir, cfg, tmp_path / "a", lambda m: [])
    (tmp_path / "a" / "adapter_model.safetensors").rename(tmp_path / "a" / "adapter_model.bin")
    with pytest.raises(InputError, match="no adapter_model.safetensors.*never unpickles"):
        load(tmp_path / "a")


def _save_regime_delta(base_dir, regime, out, options=None):
    applied = apply_regime(load(base_dir).model, regime, options)
    perturb(applied.model, applied.trainable)
    tensors = {n: p for n, p in applied.model.named_parameters() if p.requires_grad}
    info = DeltaInfo(
        base=str(base_dir),
        base_fingerprint=fingerprint(base_dir),
        regime=regime,
        regime_options=(options.__dict__ if options else {}),
    )
    save_delta(out, tensors, info)
    return applied.model


@pytest.mark.parametrize("regime", ["ln-simp", "ln", "lora"])
def test_delta_round_trip(tiny_dir, tmp_path, regime):
    torch.manual_seed(0)  # LoRA's own initialisation
    options = RegimeOptions(lora_rank=4) if regime == "lora" else None
    trained = _save_regime_delta(tiny_dir, regime, tmp_path / "d", options)
    loaded = load(tmp_path / "d")
    assert (loaded.kind, loaded.regime) == ("delta", regime)
    batch = image_batch(loaded.processor)
    exact = regime != "lora"  # LoRA is merged into the base weights: equal up to rounding
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(logits(loaded.model, batch), logits(trained, batch), **tol)
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_delta_is_small_and_names_base(tiny_dir, tmp_path):
    _save_regime_delta(tiny_dir, "ln-simp", tmp_path / "d")
    info = read_delta(tmp_path / "d")
    assert info.base == tiny_dir and info.base_fingerprint.startswith("fp1:")
    size = (tmp_path / "d" / info.tensors).stat().st_size
    assert size < 10_000  # 576 fp32 norm weights + header, vs ~1 MB for the whole model


def test_delta_refuses_a_different_base(tmp_path):
    base = save_tiny(tmp_path / "base", TinyConfig(seed=0))
    _save_regime_delta(base, "ln-simp", tmp_path / "d")
    shutil.rmtree(base)
    save_tiny(base, TinyConfig(seed=1))  # same path and shapes, other weights
    with pytest.raises(InputError, match="differs from the one the delta was trained on"):
        load(tmp_path / "d")


def test_delta_with_wrong_regime(tiny_dir, tmp_path):
    _save_regime_delta(tiny_dir, "ln-simp", tmp_path / "d")
    meta = tmp_path / "d" / DELTA_FILE
    meta.write_text(meta.read_text().replace('"ln-simp"', '"ln"'))
    with pytest.raises(InputError, match="delta.safetensors: tensors do not match regime 'ln'"):
        load(tmp_path / "d")


def test_delta_save_refuses_overwrite(tiny_dir, tmp_path):
    _save_regime_delta(tiny_dir, "ln-simp", tmp_path / "d")
    with pytest.raises(InputError, match="already exists"):
        _save_regime_delta(tiny_dir, "ln-simp", tmp_path / "d")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary directory left behind


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: (d / DELTA_FILE).write_text("{not json"), "lnprobe_delta.json: malformed JSON"),
        (lambda d: (d / DELTA_FILE).write_text('{"format": "other"}'), "not an lnprobe delta"),
        (lambda d: (d / "delta.safetensors").write_bytes(b"\x00" * 20), "corrupt delta tensors"),
        (lambda d: (d / "delta.safetensors").unlink(), "delta tensors file is missing"),
    ],
)
def test_corrupt_delta(tiny_dir, tmp_path, corrupt, message):
    _save_regime_delta(tiny_dir, "ln-simp", tmp_path / "d")
    corrupt(tmp_path / "d")
    with pytest.raises(InputError, match=message):
        load(tmp_path / "d")


def test_missing_and_corrupt_checkpoints(tiny_dir, tmp_path):
    with pytest.raises(InputError, match="nope: no such directory"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: not a model checkpoint"):
        load(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    (bad / "config.json").write_text("{")
    with pytest.raises(InputError, match=r"bad/config.json: malformed JSON"):
        load(bad)
    trunc = tmp_path / "trunc"
    shutil.copytree(tiny_dir, trunc)
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="trunc: cannot load weights"):
        load(trunc)
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(InputError, match="no safetensors weights.*never unpickles"):
        load(pickled)


def test_uncached_hub_id_is_not_downloaded():
    with pytest.raises(InputError, match="no-such-org/no-such-model: not in the local .* --online"):
        load("no-such-org/no-such-model")


def test_a_mistyped_local_path_is_named_as_a_missing_directory(tmp_path, monkeypatch):
    """`runs/bse` looks like a hub id; its parent folder exists here, so it is reported as a path."""
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"runs/bse: no such checkpoint directory \(nor a hub id"):
        load("runs/bse")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("./no-such-dir", "./no-such-dir: no such directory"),
        ("../no-such-dir/ckpt", "../no-such-dir/ckpt: no such directory"),
        ("no-such-dir/runs/ln", "no-such-dir/runs/ln: no such directory"),  # not owner/name
        ("./no-such-config.json", "./no-such-config.json: no such file"),
    ],
)
def test_a_missing_local_path_is_named_without_a_hub_look_up(spec, message, tmp_path, monkeypatch):
    """A spec that can only be a local path is never looked up on the hub: its message is one line of
    lnprobe's, with nothing of transformers' (nor of the Hugging Face cache) appended."""
    monkeypatch.chdir(tmp_path)
    for call in (load, resolve_config):
        with pytest.raises(InputError) as info:
            call(spec, online=True)
        assert str(info.value) == message


def test_a_config_field_of_the_wrong_type_says_what_is_wrong(tmp_path):
    """transformers' validation message continues on a second line after 'field ...:'; the one line keeps
    the reason instead of ending at the colon."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": "sixty-four"}))
    with pytest.raises(InputError) as info:
        resolve_config(str(path))
    message = str(info.value)
    assert "\n" not in message and ":)" not in message, message
    assert "hidden_size" in message and "expected int, got str (value: 'sixty-four')" in message


def test_presets_have_no_weights():
    with pytest.raises(InputError, match="llava-7b: a preset has shapes but no weights"):
        load("llava-7b")


def test_a_training_run_directory_stands_for_its_latest_checkpoint(tiny_dir, tmp_path, capsys):
    from lnprobe import cli
    from lnprobe.models.load import resolve_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(tiny_dir, run / "checkpoints" / "step-000004")
    (run / "latest").write_text("step-000004\n")
    loaded, direct = load(str(run)), load(str(run / "checkpoints" / "step-000004"))
    assert loaded.spec == str(run / "checkpoints" / "step-000004") and checkpoint_kind(str(run)) == "hf"
    for (name, a), (_, b) in zip(
        loaded.model.state_dict().items(), direct.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert (
        resolve_config(str(run)).to_dict()
        == resolve_config(str(run / "checkpoints" / "step-000004")).to_dict()
    )
    assert cli.main(["sites", str(run)]) == 0
    (run / "latest").write_text("step-000009\n")  # a pointer to a checkpoint that is not there
    assert cli.main(["sites", str(run)]) == 2
    err = capsys.readouterr().err
    assert "latest: names step-000009, which is not a checkpoint of this run" in err
