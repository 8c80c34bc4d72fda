"""Where things live in a multi-modal LLM, found by structure and module type, not by version-specific paths.

transformers 5.x nests LLaVA as `model.model.{vision_tower, multi_modal_projector, language_model}` with a
top-level `lm_head`; 4.x had `model.{vision_tower, multi_modal_projector, language_model.model}`. Both are
resolved by the same rules:

* language model: the nearest ancestor of the word embeddings (`get_input_embeddings()`) that holds a
  list of blocks: the decoder in LLaVA, the whole model for BERT-style encoders;
* layers: that `nn.ModuleList` of blocks, each holding an attention module, an MLP and norms (direct
  children for pre-LN decoders, one level down for post-LN encoders);
* final norm: a norm child of the language model (none for post-LN encoders); output head:
  `get_output_embeddings()`;
* vision tower: the shallowest module holding a convolution (the patch embedding) but not the decoder;
* connector: the sibling of the vision tower that holds parameters and is neither the decoder nor the head.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

from torch import nn

from lnprobe.errors import SitesError

_NORM_SUFFIXES = ("LayerNorm", "RMSNorm", "Norm")
# The one vocabulary of parameter groups (ModelSites.group_of); per layer `norms.{i}`, `attn.{i}`, ...
KINDS = ("norms", "attn", "mlp", "lora", "connector", "embeddings", "head", "vision")
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "intermediate")


def is_norm(module: nn.Module) -> bool:
    """LayerNorm / RMSNorm of torch or of any HF architecture (by class), never GroupNorm/BatchNorm."""
    if isinstance(module, nn.LayerNorm | nn.RMSNorm):
        return True
    name = type(module).__name__
    return name.endswith(_NORM_SUFFIXES) and not name.endswith(("GroupNorm", "BatchNorm"))


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


@dataclass(frozen=True)
class ModelSites:
    """Module names (as in `model.named_modules()`) of every part lnprobe trains or probes.

    Optional parts are None when absent (a text-only LM has no vision tower or connector); call
    `require(...)` to turn their absence into a clear error.
    """

    model_type: str
    language_model: str
    layers: tuple[str, ...]
    input_norms: tuple[str, ...]
    post_attention_norms: tuple[str, ...]
    layer_norms: tuple[tuple[str, ...], ...]  # every norm inside each decoder layer, in order
    final_norm: str | None  # None for post-LN encoders (BERT) that end without a norm
    attn: tuple[str, ...]  # each layer's attention module
    mlp: tuple[str, ...]
    embed_tokens: str
    lm_head: str | None
    connector: str | None
    vision_tower: str | None
    vision_layers: tuple[str, ...]
    vision_norms: tuple[str, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def lm_norms(self) -> tuple[str, ...]:
        """Every norm of the language model: the ones inside each layer, then the final norm."""
        final = (self.final_norm,) if self.final_norm else ()
        return tuple(n for per_layer in self.layer_norms for n in per_layer) + final

    def require(self, *parts: str) -> ModelSites:
        missing = [p for p in parts if getattr(self, p) in (None, ())]
        if missing:
            raise SitesError(f"{self.model_type}: could not find {', '.join(missing)} in the model")
        return self

    def group_of(self, name: str, per_layer: bool = False) -> str | None:
        """The group of a parameter (or module) name, in the one vocabulary every part of lnprobe uses
        (`KINDS`: params, regimes' learning rates, gradvar, capture site names): `norms`, `attn`, `mlp`,
        `lora` (adapters, which sit inside attention / MLP), `connector`, `embeddings`, `head`, `vision`;
        None for anything else. `per_layer`: decoder-layer groups carry their index (`norms.3`, `attn.0`,
        `lora.2`) and the final norm is `final_norm` (kind `norms`)."""
        lora = ".lora_" in name
        for i, layer in enumerate(self.layers):
            if _under(name, layer):
                if lora:
                    kind = "lora"
                elif any(_under(name, n) for n in self.layer_norms[i]):
                    kind = "norms"
                elif _under(name, self.attn[i]):
                    kind = "attn"
                elif _under(name, self.mlp[i]):
                    kind = "mlp"
                else:
                    return None
                return f"{kind}.{i}" if per_layer else kind
        if lora:
            return "lora"
        if self.final_norm and _under(name, self.final_norm):
            return "final_norm" if per_layer else "norms"
        for kind, prefix in (
            ("connector", self.connector),
            ("embeddings", self.embed_tokens),
            ("head", self.lm_head),
            ("vision", self.vision_tower),
        ):
            if prefix and _under(name, prefix):
                return kind
        return None

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def resolve_sites(model: nn.Module) -> ModelSites:
    """Find every site of `model`; raises SitesError naming the first part it cannot find."""
    model_type = type(model).__name__
    named = dict(model.named_modules())
    ids = {id(m): n for n, m in named.items()}
    embed = _input_embeddings(model, named, ids)
    if embed is None:
        raise SitesError(f"{model_type}: could not find the word embeddings (no get_input_embeddings())")
    lm, layers_list = _language_model(named, embed)
    if layers_list is None:
        raise SitesError(
            f"{model_type}: could not find transformer layers around {embed!r} "
            "(a ModuleList of blocks with attention, MLP and norms)"
        )
    layers = tuple(f"{layers_list}.{i}" for i in range(len(named[layers_list])))
    parts = [_layer_parts(named, layer) for layer in layers]
    final_norm = _final_norm(named, lm)
    head = _output_embeddings(model, ids) or _head_by_shape(named, named[embed], layers_list)
    tower = _vision_tower(named, lm)
    connector = _connector(named, tower, lm, head) if tower is not None else None
    return ModelSites(
        model_type=model_type,
        language_model=lm,
        layers=layers,
        input_norms=tuple(p.input_norm for p in parts),
        post_attention_norms=tuple(p.post_attention_norm for p in parts),
        layer_norms=tuple(p.norms for p in parts),
        final_norm=final_norm,
        attn=tuple(p.attention for p in parts),
        mlp=tuple(p.mlp for p in parts),
        embed_tokens=embed,
        lm_head=head,
        connector=connector,
        vision_tower=tower,
        vision_layers=_vision_layers(named, tower),
        vision_norms=tuple(n for n, m in named.items() if tower and _under(n, tower) and is_norm(m)),
    )


def _input_embeddings(model: nn.Module, named: dict[str, nn.Module], ids: dict[int, str]) -> str | None:
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        try:
            module = getter()
        except (NotImplementedError, AttributeError):
            module = None
        if module is not None and id(module) in ids:
            return ids[id(module)]
    for name, module in named.items():  # structural fallback: an Embedding beside a list of blocks
        if isinstance(module, nn.Embedding) and name and _block_list(named, _parent(name)) is not None:
            return name
    return None


def _output_embeddings(model: nn.Module, ids: dict[int, str]) -> str | None:
    getter = getattr(model, "get_output_embeddings", None)
    module = getter() if callable(getter) else None
    return ids.get(id(module)) if module is not None else None


def _head_by_shape(named: dict[str, nn.Module], embed: nn.Module, layers_list: str) -> str | None:
    """Structural fallback: the Linear outside the decoder that maps to the vocabulary."""
    vocab = getattr(embed, "num_embeddings", None)
    for name, module in named.items():
        if isinstance(module, nn.Linear) and module.out_features == vocab and not _under(name, layers_list):
            return name
    return None


def _children(named: dict[str, nn.Module], parent: str) -> dict[str, nn.Module]:
    module = named[parent]
    return {(f"{parent}.{k}" if parent else k): v for k, v in module.named_children()}


def _block_list(named: dict[str, nn.Module], parent: str) -> str | None:
    for name, child in _children(named, parent).items():
        if isinstance(child, nn.ModuleList) and len(child) and all(_is_block(b) for b in child):
            return name
    return None


def _language_model(named: dict[str, nn.Module], embed: str) -> tuple[str, str | None]:
    """(language model, its block list): the nearest ancestor of the embeddings with blocks one or two
    levels down (`layers` of a decoder; `encoder.layer` of a BERT-style model)."""
    ancestor = _parent(embed)
    while True:
        found = _block_list(named, ancestor)
        for child in _children(named, ancestor):
            if found is None and not isinstance(named[child], nn.ModuleList):
                found = _block_list(named, child)
        if found is not None or ancestor == "":
            return ancestor, found
        ancestor = _parent(ancestor)


def _norms_within(block: nn.Module, depth: int = 3) -> list[nn.Module]:
    found = []
    for name, module in block.named_modules():
        if name and name.count(".") < depth and is_norm(module):
            found.append(module)
    return found


def _is_block(block: nn.Module) -> bool:
    children = dict(block.named_children())
    return (
        bool(_norms_within(block))
        and _pick(children, _ATTN_NAMES, "attention") is not None
        and (_pick(children, _MLP_NAMES, "mlp") is not None)
    )


def _pick(children: dict[str, nn.Module], names: tuple[str, ...], class_word: str) -> str | None:
    """A child by conventional name, else by a word in its class name."""
    short = {k.rsplit(".", 1)[-1]: k for k in children}
    for name in names:
        if name in short:
            return short[name]
    for name, child in children.items():
        if class_word in type(child).__name__.lower():
            return name
    return None


class _LayerParts(NamedTuple):
    input_norm: str
    post_attention_norm: str
    norms: tuple[str, ...]  # every norm inside the layer (q/k norms and extra norms included)
    attention: str
    mlp: str


def _layer_parts(named: dict[str, nn.Module], layer: str) -> _LayerParts:
    """Parts of a block that `_is_block` accepted: its norms (by conventional name, else in order: the
    first and second norm of the block), attention and MLP."""
    children = _children(named, layer)
    norms = tuple(n for n, m in named.items() if _under(n, layer) and n != layer and is_norm(m))
    shallow = [n for n in norms if n.count(".") - layer.count(".") <= 3]
    by_name = {n.rsplit(".", 1)[-1]: n for n in shallow}
    return _LayerParts(
        input_norm=by_name.get("input_layernorm", shallow[0]),
        post_attention_norm=by_name.get("post_attention_layernorm", shallow[min(1, len(shallow) - 1)]),
        norms=norms,
        attention=_pick(children, _ATTN_NAMES, "attention"),
        mlp=_pick(children, _MLP_NAMES, "mlp"),
    )


def _final_norm(named: dict[str, nn.Module], lm: str) -> str | None:
    norms = [n for n, m in _children(named, lm).items() if is_norm(m)]
    return norms[-1] if norms else None


def _vision_tower(named: dict[str, nn.Module], lm: str) -> str | None:
    """Shallowest ancestor of the first patch-embedding convolution that does not contain the LM."""
    conv = next((n for n, m in named.items() if isinstance(m, nn.Conv2d | nn.Conv3d)), None)
    if conv is None:
        return None
    parts = conv.split(".")
    for depth in range(1, len(parts) + 1):
        candidate = ".".join(parts[:depth])
        if not _under(lm, candidate):
            return candidate
    return None


def _connector(named: dict[str, nn.Module], tower: str, lm: str, head: str | None) -> str | None:
    siblings = [
        n
        for n, m in _children(named, _parent(tower)).items()
        if n != tower
        and not _under(lm, n)
        and (head is None or not _under(head, n))
        and any(True for _ in m.parameters())
    ]
    if len(siblings) > 1:
        named_proj = [n for n in siblings if "projector" in n or "connector" in n]
        siblings = named_proj if len(named_proj) == 1 else siblings
    return siblings[0] if len(siblings) == 1 else None


def _vision_layers(named: dict[str, nn.Module], tower: str | None) -> tuple[str, ...]:
    if tower is None:
        return ()
    lists = [(n, m) for n, m in named.items() if _under(n, tower) and isinstance(m, nn.ModuleList)]
    if not lists:
        return ()
    name, longest = max(lists, key=lambda item: len(item[1]))
    return tuple(f"{name}.{i}" for i in range(len(longest)))
