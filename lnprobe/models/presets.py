"""Named model shapes for `lnprobe params` (no weights: built on the meta device).

`llava-7b` / `llava-13b`: the paper's setting (LLaVA-1: Vicuna + CLIP ViT-L/14, single linear connector,
vocabulary 32000). `llava-1.5-*`: LLaVA-1.5 (CLIP ViT-L/14-336, two-layer MLP connector, vocabulary 32064).
`llava-1b`: CLIP ViT-L/14-336 + TinyLlama-1.1B dims (the 1B row of the GPU cost table).
`tiny`: the test model.
"""

from __future__ import annotations

from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

from lnprobe.models.connector import set_connector_kind

_VIT_L = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
_LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
_LLAMA_13B = dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40)
_TINYLLAMA = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
)

PRESETS: dict[str, dict] = {
    "llava-7b": dict(text=_LLAMA_7B, vocab=32000, image_size=224, connector="linear"),
    "llava-13b": dict(text=_LLAMA_13B, vocab=32000, image_size=224, connector="linear"),
    "llava-1.5-7b": dict(text=_LLAMA_7B, vocab=32064, image_size=336, connector="mlp2x_gelu"),
    "llava-1.5-13b": dict(text=_LLAMA_13B, vocab=32064, image_size=336, connector="mlp2x_gelu"),
    "llava-1b": dict(text=_TINYLLAMA, vocab=32064, image_size=336, connector="mlp2x_gelu"),
}


def preset_names() -> list[str]:
    return [*PRESETS, "tiny"]


def preset_config(name: str) -> LlavaConfig:
    """The LlavaConfig of a named preset (`tiny` builds the tiny model's config)."""
    if name == "tiny":
        from lnprobe.models.tiny import TinyConfig, build_tokenizer, llava_config

        cfg = TinyConfig()
        return llava_config(cfg, build_tokenizer(cfg.vocab_size))
    shape = PRESETS[name]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_VIT_L, image_size=shape["image_size"], patch_size=14),
        text_config=LlamaConfig(**shape["text"], vocab_size=shape["vocab"], tie_word_embeddings=False),
        image_token_id=shape["vocab"] - 1,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    set_connector_kind(config, shape["connector"])
    return config
