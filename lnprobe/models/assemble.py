"""`lnprobe assemble`: a LLaVA checkpoint built from a text-only causal LM and a vision encoder, the paper's
starting point (Vicuna / LLaMA-2 + CLIP ViT-L + a fresh connector).

How: the LLaVA model is built on the meta device (no memory), then the source LM's decoder and head and
the vision encoder's transformer, each loaded once by transformers from safetensors, are moved into it as
modules (no copies), and a connector is initialised with a recorded seed. So the LLM and vision weights are
bitwise the sources', the peak memory is one copy of the weights (plus the embedding rows being resized),
and `save_pretrained` writes sharded safetensors (2 GB shards).

The LLM may be a GGUF file (or a folder holding one): it is read through its cached float32 copy
(`lnprobe.models.gguf`).

Tokenizer: `<image>` is added as a special token. When its id is beyond the LM's embedding rows, the
embeddings (and an untied head) gain rows initialised to the mean of the existing rows; existing rows are
untouched. A tokenizer without a pad token pads with its unk (else eos) token, adding no row.

Vision: a CLIP or SigLIP vision model, or a full CLIP / SigLIP model (its vision tower is taken). Features
come from the second-last layer (`vision_feature_layer=-2`); CLIP drops its CLS token (`default`), SigLIP
has none (`full`). Connector: `mlp2x_gelu` (LLaVA-1.5, the native class) or `linear` (LLaVA-1 and the paper:
lnprobe's single-layer connector, recorded as `lnprobe_connector: linear` in config.json; load such a
checkpoint with `lnprobe.models.load()`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, LlavaConfig

from lnprobe.errors import InputError
from lnprobe.models.config import AssembleConfig
from lnprobe.models.connector import LinearConnector, set_connector_kind
from lnprobe.models.hf import quiet_transformers, save_quietly
from lnprobe.models.load import require_local
from lnprobe.textio import one_line

DECODERS = ("llama", "mistral", "qwen2")
IMAGE = "<image>"
ASSEMBLE_KEY = "lnprobe_assemble"


def _config(spec: str, online: bool, flag: str):
    require_local(spec, flag)  # a missing folder is named as such, not looked up on the hub
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(spec, local_files_only=not online, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        where = "" if Path(spec).exists() or online else " (not a local directory or cached hub id; --online)"
        raise InputError(f"{flag} {spec}: no readable config.json{where} ({one_line(exc)})") from None


def vision_config_of(config, spec: str):
    """The vision part of a CLIP / SigLIP (vision) config; InputError for a model without patch embeddings."""
    vision = getattr(config, "vision_config", None) or config
    if not (
        hasattr(vision, "patch_size") and hasattr(vision, "image_size") and hasattr(vision, "num_channels")
    ):
        raise InputError(f"--vision {spec}: model type {config.model_type!r} has no patch embeddings")
    return copy.deepcopy(vision)


def assembled_config(
    llm_config, vision_config, image_token_id: int, pad_token_id, connector: str
) -> LlavaConfig:
    """The LLaVA config of the assembled model (also used on its own, e.g. to count parameters)."""
    text = copy.deepcopy(llm_config)
    text.vocab_size = max(text.vocab_size, image_token_id + 1)
    siglip = "siglip" in vision_config.model_type
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text,
        image_token_id=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="full" if siglip else "default",
        projector_hidden_act="gelu",
        image_seq_length=patches,
        pad_token_id=pad_token_id,
        tie_word_embeddings=bool(getattr(text, "tie_word_embeddings", False)),
    )
    set_connector_kind(config, connector)
    return config


def _tokenizer(spec: str, online: bool):
    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(spec, local_files_only=not online, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--llm {spec}: no usable tokenizer ({one_line(exc)})") from None
    if IMAGE in tok.get_vocab():
        raise InputError(
            f"--llm {spec}: the tokenizer already has a {IMAGE} token "
            f"(id {tok.convert_tokens_to_ids(IMAGE)}); lnprobe adds its own and will not reuse one of "
            "unknown meaning"
        )
    tok.add_tokens([IMAGE], special_tokens=True)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


def llm_source(spec: str) -> str:
    """The checkpoint folder of `--llm`: a GGUF's cached float32 copy (converted on first use), else
    `spec` itself."""
    from lnprobe.models.gguf import cached_checkpoint, gguf_source

    source = gguf_source(spec) if Path(spec).exists() else None
    return str(cached_checkpoint(source)) if source is not None else spec


def check_inputs(cfg: AssembleConfig):
    """(LLM config, vision config, tokenizer), validated before any weights are read (a GGUF LLM is
    converted first)."""
    llm = _config(llm_source(cfg.llm), cfg.online, "--llm")
    if llm.model_type not in DECODERS:
        raise InputError(
            f"--llm {cfg.llm}: model type {llm.model_type!r} is not a decoder LM lnprobe can assemble "
            f"({', '.join(DECODERS)})"
        )
    vision = vision_config_of(_config(cfg.vision, cfg.online, "--vision"), cfg.vision)
    output(cfg).check()
    return llm, vision, _tokenizer(llm_source(cfg.llm), cfg.online)


def output(cfg: AssembleConfig):
    from lnprobe.io import Output

    return Output(Path(cfg.out), "assemble", force=cfg.force, inputs=(cfg.llm, cfg.vision))


def assemble(cfg: AssembleConfig) -> Path:
    """Build and save the assembled checkpoint to `cfg.out` (atomically); returns its path."""
    from lnprobe.config import save_config
    from lnprobe.models.load import build_from_config
    from lnprobe.models.sites import resolve_sites

    llm_config, vision_config, tok = check_inputs(cfg)
    image_id = tok.convert_tokens_to_ids(IMAGE)
    config = assembled_config(llm_config, vision_config, image_id, tok.pad_token_id, cfg.connector)
    model = build_from_config(config, "meta")
    sites = resolve_sites(model)
    llm, vision = _load_sources(cfg)
    src = resolve_sites(llm)
    dtype = next(llm.parameters()).dtype
    _put(model, sites.language_model, llm.get_submodule(src.language_model))
    _put(model, sites.lm_head, llm.get_submodule(src.lm_head))
    _put_tower(model, sites.vision_tower, vision, cfg.vision)
    resized = _resize(model, sites, config.text_config.vocab_size, config.tie_word_embeddings)
    _put(model, sites.connector, _connector(config, cfg, dtype))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"assembly left tensors unset: {left[:3]}")
    model.config.dtype = dtype
    setattr(model.config, ASSEMBLE_KEY, {**asdict(cfg), "image_token_rows_added": resized})
    processor = _processor(cfg, vision_config, tok)
    with output(cfg).build() as tmp, quiet_transformers():
        save_quietly(model, tmp, max_shard_size="2GB")
        processor.save_pretrained(tmp)
        save_config(cfg, tmp, seed=cfg.seed)
    return Path(cfg.out)


def _load_sources(cfg: AssembleConfig) -> tuple[nn.Module, nn.Module]:
    kw = dict(dtype="auto", use_safetensors=True, local_files_only=not cfg.online, trust_remote_code=False)
    try:
        with quiet_transformers():
            llm = AutoModelForCausalLM.from_pretrained(llm_source(cfg.llm), **kw)
            vision = AutoModel.from_pretrained(cfg.vision, **kw)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"cannot load weights ({one_line(exc)})") from None
    full = hasattr(vision.config, "vision_config")  # a CLIP / SigLIP model with a text side
    return llm, vision.vision_model if full else vision


def _put_tower(model: nn.Module, name: str, tower: nn.Module, spec: str) -> None:
    """The vision tower in place: the same class as LLaVA's (transformers 5), or its inner transformer."""
    target = model.get_submodule(name)
    if isinstance(tower, type(target)):
        _put(model, name, tower)
    elif hasattr(target, "vision_model"):  # transformers 4.x: CLIPVisionModel wraps CLIPVisionTransformer
        target.vision_model = tower
    else:
        raise InputError(f"--vision {spec}: {type(tower).__name__} does not fit {type(target).__name__}")


def _put(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


@torch.no_grad()
def _resize(model: nn.Module, sites, vocab: int, tied: bool) -> int:
    """Grow the embeddings (and an untied head) to `vocab` rows, new rows = mean of the old ones."""
    embed = model.get_submodule(sites.embed_tokens)
    old = embed.weight.shape[0]
    if old >= vocab:
        return 0
    grown = nn.Embedding(
        vocab, embed.weight.shape[1], padding_idx=embed.padding_idx, dtype=embed.weight.dtype
    )
    grown.weight[:old] = embed.weight
    grown.weight[old:] = embed.weight.double().mean(0).to(embed.weight.dtype)
    _put(model, sites.embed_tokens, grown)
    head = model.get_submodule(sites.lm_head)
    if tied:
        head.weight = grown.weight
    else:
        weight = torch.empty(vocab, head.weight.shape[1], dtype=head.weight.dtype)
        weight[:old] = head.weight
        weight[old:] = head.weight.double().mean(0).to(head.weight.dtype)
        new_head = nn.Linear(head.in_features, vocab, bias=False, dtype=head.weight.dtype)
        new_head.weight = nn.Parameter(weight)
        _put(model, sites.lm_head, new_head)
    return vocab - old


def _connector(config: LlavaConfig, cfg: AssembleConfig, dtype: torch.dtype) -> nn.Module:
    """A freshly initialised connector (torch's default Linear init) from `cfg.seed`."""
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.connector == "linear":
            module = LinearConnector(
                nn.Linear(config.vision_config.hidden_size, config.text_config.hidden_size)
            )
        else:
            module = LlavaMultiModalProjector(config)
    return module.to(dtype)


def _processor(cfg: AssembleConfig, vision_config, tok):
    import transformers
    from transformers import AutoImageProcessor, LlavaProcessor

    try:
        with quiet_transformers():
            images = AutoImageProcessor.from_pretrained(cfg.vision, local_files_only=not cfg.online)
    except (OSError, ValueError, KeyError):
        size = vision_config.image_size
        with quiet_transformers():  # without torchvision, transformers falls back to the PIL processor
            images = transformers.CLIPImageProcessor(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            )
    siglip = "siglip" in vision_config.model_type
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="full" if siglip else "default",
        num_additional_image_tokens=0 if siglip else 1,
        image_token=IMAGE,
    )
