"""Tiny LLaVA models built from configs, with an offline processor: the fixture for tests and the demo.

A tiny model is a CLIP vision tower + a Llama / Mistral / Qwen2 decoder + a connector, a few hundred
thousand parameters in all. The processor is a byte-level BPE tokenizer trained here on a small fixed corpus
(deterministic, so every tiny model has the same vocabulary) with `<image>` as a special token, plus a CLIP
image processor; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from lnprobe.models.config import DECODERS, TinyConfig
from lnprobe.models.connector import install_connector, set_connector_kind
from lnprobe.models.hf import quiet_transformers, save_quietly

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")
IMAGE_TOKEN = "<image>"
LM_CONFIGS = dict(zip(DECODERS, (LlamaConfig, MistralConfig, Qwen2Config), strict=True))

# Words of the synthetic world (shapes, colours, digits, places) and of the chat templates, so the tiny
# tokenizer compresses the data it will see; any other text still tokenizes (byte-level BPE).
_WORDS = (
    "a an the is are of in on at to and or with what which where how many colour color shape image picture "
    "red green blue yellow purple orange black white grey circle square triangle star cross digit number "
    "zero one two three four five six seven eight nine top bottom left right centre center middle corner "
    "above below next large small big tiny there this that it yes no count describe caption question answer "
    "USER ASSISTANT SYSTEM Human Assistant [INST] [/INST] <<SYS>> <</SYS>> A chat between a curious user and "
    "an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers."
)
# The `words` tokenizer (the paper miniature's): one token per word of the synthetic world, its questions
# and the chat templates, and one per punctuation mark; any other word is `<unk>`. A vocabulary this small
# keeps word embeddings + output head near the paper's share of the model (3.78 % of LLaVA-7B).
_MORE_WORDS = (
    "nothing Describe How Is What Where answers detail detailed helpful questions shapes shows user s"
)
_PUNCTUATION = ".,?:;!'\"()[]/<>-"


def build_tokenizer(
    vocab_size: int = 512, image_token: bool = True, kind: str = "bpe"
) -> PreTrainedTokenizerFast:
    """A deterministic tokenizer with `<image>` as a special token (unless `image_token` is False: a text
    LLM's tokenizer, e.g. for `lnprobe assemble`): byte-level BPE (`bpe`) or one token per word (`words`)."""
    specials = [t for t in SPECIAL_TOKENS if image_token or t != IMAGE_TOKEN]
    tok = _word_level(specials) if kind == "words" else _byte_bpe(vocab_size, specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN} if image_token else {},
        padding_side="right",
    )


def _word_level(specials: list[str]) -> Tokenizer:
    words = sorted(set(_WORDS.split()) | set(_MORE_WORDS.split()))
    vocab = {t: i for i, t in enumerate([*specials, *words, *_PUNCTUATION])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tok.decoder = decoders.WordPiece(cleanup=True)  # words joined by spaces, none before . , ? !
    return tok


def _byte_bpe(vocab_size: int, specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = _WORDS.split()
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    tok.train_from_iterator(corpus, trainer)
    return tok


def build_processor(cfg: TinyConfig, tokenizer: PreTrainedTokenizerFast | None = None) -> LlavaProcessor:
    tokenizer = tokenizer or build_tokenizer(cfg.vocab_size, kind=cfg.tokenizer)
    with quiet_transformers():  # without torchvision, transformers falls back to the PIL processor
        import transformers

        image_processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": cfg.image_size},
            crop_size={"height": cfg.image_size, "width": cfg.image_size},
        )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token that the "default" strategy drops
    )


def text_config(cfg: TinyConfig, tokenizer: PreTrainedTokenizerFast):
    """The tiny decoder's config (vocabulary = the tokenizer's)."""
    if cfg.lm not in LM_CONFIGS:
        raise ValueError(f"unknown tiny LM {cfg.lm!r} (known: {', '.join(LM_CONFIGS)})")
    return LM_CONFIGS[cfg.lm](
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        vocab_size=len(tokenizer),
        max_position_embeddings=cfg.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


def vision_config(cfg: TinyConfig) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden_size,
    )


def llava_config(cfg: TinyConfig, tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    text, vision = text_config(cfg, tokenizer), vision_config(cfg)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        pad_token_id=tokenizer.pad_token_id,
    )
    set_connector_kind(config, cfg.connector)
    return config


def build_tiny(cfg: TinyConfig | None = None) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A freshly initialised tiny LLaVA model (seeded) and its offline processor."""
    cfg = cfg or TinyConfig()
    processor = build_processor(cfg)
    config = llava_config(cfg, processor.tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = LlavaForConditionalGeneration(config)
    install_connector(model, "model.multi_modal_projector")
    return model.eval(), processor


def save_tiny(out_dir: str | Path, cfg: TinyConfig | None = None, overwrite: bool = False) -> Path:
    """Build a tiny model and save it (safetensors + processor + lnprobe config) to OUT_DIR, atomically."""
    from lnprobe.config import save_config
    from lnprobe.io import Output

    cfg = cfg or TinyConfig()
    output = Output(Path(out_dir), "tiny", force=overwrite)
    output.check()
    model, processor = build_tiny(cfg)
    with output.build() as tmp, quiet_transformers():
        save_quietly(model, tmp)
        processor.save_pretrained(tmp)
        save_config(cfg, tmp, seed=cfg.seed)
    return Path(out_dir)


PARTS = ("llava", "lm", "vision")


def save_tiny_part(out_dir: str | Path, cfg: TinyConfig, part: str, overwrite: bool = False) -> Path:
    """Save a tiny LLaVA (`llava`), or one of the parts `lnprobe assemble` joins: a text-only causal LM
    with a tokenizer that has no `<image>` token (`lm`), or a CLIP vision model + image processor
    (`vision`)."""
    from transformers import AutoModelForCausalLM, CLIPVisionModel

    from lnprobe.config import save_config
    from lnprobe.io import Output

    if part not in PARTS:
        raise ValueError(f"unknown part {part!r} (known: {', '.join(PARTS)})")
    if part == "llava":
        return save_tiny(out_dir, cfg, overwrite)
    output = Output(Path(out_dir), "tiny", force=overwrite)
    output.check()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if part == "lm":
            extra = build_tokenizer(cfg.vocab_size, image_token=False, kind=cfg.tokenizer)
            model = AutoModelForCausalLM.from_config(text_config(cfg, extra))
        else:
            extra = build_processor(cfg).image_processor
            model = CLIPVisionModel(vision_config(cfg))
    with output.build() as tmp, quiet_transformers():
        save_quietly(model, tmp)
        extra.save_pretrained(tmp)
        save_config(cfg, tmp, seed=cfg.seed)
    return Path(out_dir)
