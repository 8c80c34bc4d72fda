"""The site resolver on transformers 5.x LLaVA (Llama, Mistral, Qwen2 decoders), on the 4.x layout, and
its errors on models it cannot use."""

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    CLIPVisionModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaForCausalLM,
)
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from lnprobe.errors import SitesError
from lnprobe.models import TinyConfig, build_tiny, is_norm, resolve_sites
from lnprobe.models.connector import LinearConnector
from tests.conftest import SMALL_TEXT

L = TinyConfig().num_layers


@pytest.mark.parametrize("lm", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("connector", ["linear", "mlp2x_gelu"])
def test_transformers5_layout(lm, connector):
    model, _ = build_tiny(TinyConfig(lm=lm, connector=connector))
    s = resolve_sites(model)
    lm_root = "model.language_model"
    assert s.language_model == lm_root
    assert s.layers == tuple(f"{lm_root}.layers.{i}" for i in range(L))
    assert s.input_norms == tuple(f"{lm_root}.layers.{i}.input_layernorm" for i in range(L))
    assert s.post_attention_norms == tuple(f"{lm_root}.layers.{i}.post_attention_layernorm" for i in range(L))
    assert s.final_norm == f"{lm_root}.norm"
    assert s.attn == tuple(f"{lm_root}.layers.{i}.self_attn" for i in range(L))
    assert s.mlp == tuple(f"{lm_root}.layers.{i}.mlp" for i in range(L))
    assert (s.embed_tokens, s.lm_head) == (f"{lm_root}.embed_tokens", "lm_head")
    assert (s.connector, s.vision_tower) == ("model.multi_modal_projector", "model.vision_tower")
    expected_type = LinearConnector if connector == "linear" else LlavaMultiModalProjector
    assert isinstance(model.get_submodule(s.connector), expected_type)
    assert isinstance(model.get_submodule(s.vision_tower), CLIPVisionModel)
    vision_layers = TinyConfig().vision_layers
    assert len(s.vision_layers) == vision_layers
    assert (
        len(s.vision_norms) == 2 * vision_layers + 2
    )  # layer_norm1/2 per layer + pre_layrnorm + post_layernorm
    assert all(is_norm(model.get_submodule(n)) for n in (*s.lm_norms(), *s.vision_norms))
    assert len(s.lm_norms()) == 2 * L + 1


class Legacy4x(nn.Module):
    """transformers 4.x LlavaForConditionalGeneration layout: vision_tower, multi_modal_projector and a
    LlamaForCausalLM `language_model` (decoder at language_model.model, head at language_model.lm_head)."""

    def __init__(self, config):
        super().__init__()
        self.vision_tower = CLIPVisionModel(config.vision_config)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = LlamaForCausalLM(config.text_config)

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()


@pytest.mark.parametrize("getters", [True, False], ids=["getters", "structural-fallback"])
def test_transformers4_layout(getters):
    model, _ = build_tiny(TinyConfig(connector="mlp2x_gelu"))
    legacy = Legacy4x(model.config)
    if not getters:  # hide the HF getters: the resolver must find embeddings and head by structure
        legacy.get_input_embeddings = None
        legacy.get_output_embeddings = None
    s = resolve_sites(legacy)
    assert s.language_model == "language_model.model"
    assert s.layers[0] == "language_model.model.layers.0" and len(s.layers) == L
    assert s.input_norms[-1] == f"language_model.model.layers.{L - 1}.input_layernorm"
    assert s.final_norm == "language_model.model.norm"
    assert s.embed_tokens == "language_model.model.embed_tokens"
    assert s.lm_head == "language_model.lm_head"
    assert s.connector == "multi_modal_projector"
    assert s.vision_tower == "vision_tower"


def test_text_only_lm_resolves_without_vision():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64))
    s = resolve_sites(gpt2)
    assert s.layers == ("transformer.h.0", "transformer.h.1")
    assert s.input_norms == ("transformer.h.0.ln_1", "transformer.h.1.ln_1")
    assert s.post_attention_norms == ("transformer.h.0.ln_2", "transformer.h.1.ln_2")
    assert (s.final_norm, s.lm_head) == ("transformer.ln_f", "lm_head")
    assert s.vision_tower is None and s.connector is None
    with pytest.raises(SitesError, match="GPT2LMHeadModel: could not find connector, vision_tower"):
        s.require("connector", "vision_tower")


def test_post_ln_encoder_resolves_without_final_norm():
    bert = BertModel(
        BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
        )
    )
    s = resolve_sites(bert)
    assert s.language_model == "" and s.layers == ("encoder.layer.0", "encoder.layer.1")
    assert s.input_norms[0] == "encoder.layer.0.attention.output.LayerNorm"
    assert s.post_attention_norms[0] == "encoder.layer.0.output.LayerNorm"
    assert (s.attn[0], s.mlp[0]) == ("encoder.layer.0.attention", "encoder.layer.0.intermediate")
    assert s.final_norm is None and s.lm_norms() == tuple(n for pair in s.layer_norms for n in pair)


class EmbeddingsOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])  # no attention, no norms

    def get_input_embeddings(self):
        return self.embed


def test_model_without_transformer_blocks_fails_clearly():
    with pytest.raises(SitesError, match="EmbeddingsOnly: could not find transformer layers around 'embed'"):
        resolve_sites(EmbeddingsOnly())


def test_module_without_embeddings_fails_clearly():
    with pytest.raises(SitesError, match="Sequential: could not find the word embeddings"):
        resolve_sites(nn.Sequential(nn.Linear(4, 4)))


@pytest.mark.parametrize(
    "family",
    ["llava_next-mistral", "llava_onevision-qwen2"],
)
def test_released_mistral_and_qwen2_llava_variants(family):
    """LLaVA-NeXT (Mistral, CLIP) and LLaVA-OneVision (Qwen2, SigLIP) classes, built on the meta device."""
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        LlavaNextConfig,
        LlavaOnevisionConfig,
        MistralConfig,
        Qwen2Config,
    )

    config = (
        LlavaNextConfig(text_config=MistralConfig(**SMALL_TEXT))
        if family.startswith("llava_next")
        else LlavaOnevisionConfig(text_config=Qwen2Config(**SMALL_TEXT))
    )
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    s = resolve_sites(model)
    assert s.layers == ("model.language_model.layers.0", "model.language_model.layers.1")
    assert (s.final_norm, s.lm_head) == ("model.language_model.norm", "lm_head")
    assert (s.connector, s.vision_tower) == ("model.multi_modal_projector", "model.vision_tower")
    assert len(s.vision_norms) == 2 * len(s.vision_layers) + (2 if family.startswith("llava_next") else 1)


def test_one_vocabulary_for_parameter_groups(tiny):
    """`ModelSites.group_of` is the one answer to "which group is this parameter in": per layer for the
    probes (`norms.3`), by kind for params and the regimes' learning rates, the same words as capture."""
    from lnprobe.capture import catalogue
    from lnprobe.models.sites import KINDS
    from lnprobe.params import group_of
    from lnprobe.probes.gradvar.stats import group_kind

    model, _ = tiny
    s = resolve_sites(model)
    names = [n for n, _ in model.named_parameters()]
    for name in names:
        kind, layered = s.group_of(name), s.group_of(name, per_layer=True)
        assert (kind is None) == (layered is None)
        assert kind is None or kind == group_kind(layered) and kind in KINDS
        assert group_of(name, s) == (kind or "other")
    layer1 = [n for n in names if n.startswith(s.layers[1] + ".")]
    expected = {
        n: "norms.1"
        if any(n.startswith(m + ".") for m in s.layer_norms[1])
        else "attn.1"
        if n.startswith(s.attn[1] + ".")
        else "mlp.1"
        for n in layer1
    }
    assert {n: s.group_of(n, per_layer=True) for n in layer1} == expected
    assert {"norms", "attn", "mlp", "connector", "embeddings", "head", "vision"} == {
        s.group_of(n) for n in names
    }
    assert s.group_of(s.final_norm + ".weight", per_layer=True) == "final_norm"
    site_kinds = {c.name.split(".")[0] for c in catalogue(s)}
    assert {"attn", "mlp"} <= site_kinds  # capture names use the same words


def test_one_test_for_a_norm():
    """`is_norm` decides for every part of lnprobe (sites, regimes, lnshift): LayerNorm / RMSNorm of any
    architecture, never GroupNorm / BatchNorm / Identity."""
    from lnprobe.probes.lnshift.run import norm_parameters

    class LlamaRMSNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(4))

    model = torch.nn.ModuleDict(
        {
            "ln": torch.nn.LayerNorm(4),
            "rms": LlamaRMSNorm(),
            "group": torch.nn.GroupNorm(2, 4),
            "batch": torch.nn.BatchNorm1d(4),
            "identity_norm": torch.nn.Identity(),
        }
    )
    assert [k for k, m in model.items() if is_norm(m)] == ["ln", "rms"]
    assert sorted(norm_parameters(model)) == ["ln.bias", "ln.weight", "rms.weight"]
