"""`load(spec)`: one entry point for every checkpoint lnprobe studies.

A spec is a local HF checkpoint directory, a hub id (read from the local Hugging Face cache; downloaded
only with `online=True`), a PEFT adapter directory (LoRA or LN tuning; base from its adapter_config.json),
a directory of a registered format (`lnprobe.models.formats`: an lnprobe delta, base from its
lnprobe_delta.json, loaded by `lnprobe.checkpoints`), a training run directory (its newest checkpoint,
as named by its `latest` file), or a GGUF file (or a directory holding one and no config.json: read once,
dequantised to float32 and cached as safetensors, `lnprobe.models.gguf`). Weights are read from
safetensors (or GGUF) only; `trust_remote_code` is off unless asked for.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PretrainedConfig

from lnprobe import textio
from lnprobe.errors import InputError
from lnprobe.io import removed_weights
from lnprobe.models.connector import connector_kind, install_connector
from lnprobe.models.formats import FORMATS
from lnprobe.models.hf import quiet_transformers
from lnprobe.models.presets import PRESETS, preset_config
from lnprobe.models.sites import ModelSites, resolve_sites

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Loaded:
    """A loaded model, its processor (None when the checkpoint has none) and where it came from."""

    model: nn.Module
    processor: Any
    spec: str
    kind: str  # "hf" | "peft" | a registered format ("delta")
    base: str | None = None
    regime: str | None = None

    @property
    def sites(self) -> ModelSites:
        return resolve_sites(self.model)


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    return DTYPES[dtype]


def resolve_run(spec: str | Path) -> str:
    """A training run directory (with `latest` and `checkpoints/`) stands for its newest checkpoint;
    any other spec is returned unchanged."""
    path = Path(str(spec))
    pointer = path / "latest"
    if not (pointer.is_file() and (path / "checkpoints").is_dir() and not (path / "config.json").exists()):
        return str(spec)
    ckpt = path / "checkpoints" / pointer.read_text().strip()
    if not ckpt.is_dir():
        raise InputError(f"{pointer}: names {ckpt.name}, which is not a checkpoint of this run")
    return str(ckpt)


def checkpoint_kind(spec: str) -> str:
    """'preset', 'hf', 'peft', a registered format ('delta'), 'gguf', 'json' (a config file) or 'hub';
    InputError if none fits."""
    from lnprobe.models.gguf import gguf_source

    path = Path(spec)
    plain = path.is_dir() and not any((path / f).is_file() for f in ("adapter_config.json", "latest"))
    if plain and gguf_source(path) is not None:  # a folder with one .gguf and no config.json
        return "gguf"
    if path.is_dir():
        for name in FORMATS:
            if FORMATS.get(name).marks(path):
                return name
        if (path / "adapter_config.json").is_file():
            return "peft"
        if (path / "config.json").is_file():
            return "hf"
        if resolve_run(spec) != str(spec):
            return checkpoint_kind(resolve_run(spec))
        files = ["config.json", "adapter_config.json", *(FORMATS.get(n).marker for n in FORMATS)]
        raise InputError(f"{spec}: not a model checkpoint (no {', '.join(files[:-1])} or {files[-1]})")
    if path.is_file():
        if path.suffix == ".json":
            return "json"
        if gguf_source(path) is not None:
            return "gguf"
        raise InputError(f"{spec}: expected a checkpoint directory, a .gguf file or a config .json file")
    if spec in PRESETS or spec == "tiny":
        return "preset"
    require_local(spec)
    if _HUB_ID.match(spec):
        return "hub"
    raise InputError(f"{spec}: no such checkpoint directory, config file, preset or hub id")


def looks_local(spec: str) -> bool:
    """Whether `spec` can only name a local path, never a hub id (owner/name): it starts with ./, ../, / or
    ~, or holds a path separator without being owner/name."""
    spec = str(spec)
    if spec.startswith(("./", "../", "/", "~", "." + os.sep, ".." + os.sep)) or spec in (".", ".."):
        return True
    return ("/" in spec or os.sep in spec) and not _HUB_ID.match(spec)


def require_local(spec: str, flag: str = "") -> None:
    """InputError '[FLAG ]SPEC: no such directory' (or file, for a .json or .gguf) when `spec` can only be
    a local path and nothing is there: no hub look-up, no download, no message of transformers'."""
    spec = str(spec)
    if looks_local(spec) and not os.path.lexists(os.path.expanduser(spec)):
        what = "file" if spec.endswith((".json", ".gguf")) else "directory"
        raise InputError(f"{flag + ' ' if flag else ''}{spec}: no such {what}")


def read_json(path: Path) -> dict:
    if not path.exists():
        raise InputError(f"{path}: missing")
    data = textio.read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def base_of(spec: str, base: str | None = None) -> str:
    """The base model spec of a PEFT adapter or registered-format (delta) directory (an explicit `base`
    wins)."""
    spec = resolve_run(spec)
    path = Path(spec)
    kind = checkpoint_kind(spec)
    if kind in FORMATS:
        fmt = FORMATS.get(kind)
        named, source = fmt.base(path), path / fmt.marker
    else:
        named = read_json(path / "adapter_config.json").get("base_model_name_or_path")
        source = path / "adapter_config.json"
    chosen = base or named
    if not chosen:
        raise InputError(f"{source}: names no base model (pass --base)")
    if not base and not Path(chosen).is_absolute() and (path / chosen).exists():
        chosen = str(path / chosen)  # a base recorded relative to the adapter
    chosen = resolve_run(chosen)
    try:
        checkpoint_kind(chosen)
    except InputError:
        raise InputError(f"{source}: base model {chosen!r} not found (pass --base)") from None
    return chosen


def resolve_config(spec: str, *, online: bool = False, base: str | None = None) -> PretrainedConfig:
    """The model config of any spec, without loading weights."""
    spec = resolve_run(spec)
    kind = checkpoint_kind(spec)
    if kind == "preset":
        return preset_config(spec)
    if kind == "peft" or kind in FORMATS:
        return resolve_config(base_of(spec, base), online=online)
    if kind == "gguf":
        return resolve_config(str(gguf_checkpoint(spec)))
    if kind == "json":
        data = read_json(Path(spec))
        if "model_type" not in data:
            raise InputError(f"{spec}: config has no 'model_type'")
        try:
            return check_shapes(AutoConfig.for_model(**data), spec)
        except CONFIG_ERRORS as exc:
            raise InputError(f"{spec}: invalid model config ({textio.one_line(exc)})") from None
    if kind == "hf":
        read_json(Path(spec) / "config.json")  # corrupt-file errors name the file
    try:
        config = AutoConfig.from_pretrained(spec, local_files_only=not online, trust_remote_code=False)
    except CONFIG_ERRORS as exc:
        if kind == "hub" and not online:
            if Path(spec).parent.is_dir():  # `runs/bse`: most likely a mistyped local path
                raise InputError(
                    f"{spec}: no such checkpoint directory (nor a hub id in the local Hugging Face cache; "
                    "pass --online to download one)"
                ) from None
            raise InputError(
                f"{spec}: not in the local Hugging Face cache (pass --online to download)"
            ) from None
        raise InputError(f"{spec}: cannot read model config ({textio.one_line(exc)})") from None
    return check_shapes(config, spec)


# transformers' config validation raises these (and huggingface_hub's strict dataclasses their own)
CONFIG_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, TypeError)
try:
    from huggingface_hub.errors import StrictDataclassError

    CONFIG_ERRORS += (StrictDataclassError,)
except ImportError:  # pragma: no cover - older huggingface_hub
    pass
SHAPE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def check_shapes(config: PretrainedConfig, spec: str) -> PretrainedConfig:
    """InputError naming `spec` when a shape field of the config (or its text/vision part) is not a
    positive integer, before anything is built from it."""
    for part in (config, getattr(config, "text_config", None), getattr(config, "vision_config", None)):
        for name in SHAPE_FIELDS:
            value = getattr(part, name, None) if part is not None else None
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                where = (
                    "" if part is config else f"{'text' if part is config.text_config else 'vision'}_config."
                )
                raise InputError(f"{spec}: config field {where}{name} = {value!r} must be a positive integer")
    return config


def auto_class(config: PretrainedConfig):
    """The transformers auto class for `config`: image-text-to-text for the LLaVA family, else the bare
    `AutoModel` (text transformers such as BERT, for the similarity probes)."""
    from transformers import AutoModel

    if type(config) in AutoModelForImageTextToText._model_mapping:
        return AutoModelForImageTextToText
    try:
        AutoModel._model_mapping[type(config)]
    except KeyError:
        raise InputError(
            f"model type {config.model_type!r} is not a transformers model lnprobe can build"
        ) from None
    return AutoModel


def build_from_config(config: PretrainedConfig, device: str | torch.device = "meta") -> nn.Module:
    """A randomly initialised (or, on 'meta', unallocated) model of `config`, connector installed."""
    cls = auto_class(config)
    with torch.device(device), quiet_transformers():
        model = cls.from_config(config)
    return _finish(model)


def _finish(model: nn.Module) -> nn.Module:
    """Install lnprobe's single linear connector when the config asks for it."""
    if connector_kind(model.config) != "linear":
        return model
    return install_connector(model, resolve_sites(model).require("connector").connector)


def load(
    spec: str | Path,
    *,
    base: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    merge: bool = True,
    online: bool = False,
    trust_remote_code: bool = False,
) -> Loaded:
    """Load a model + processor from any spec (see module docstring). PEFT and LoRA-delta models are
    merged into plain modules unless `merge=False`."""
    spec = resolve_run(spec)
    removed = removed_weights(spec)  # a run a miniature pruned: say so, not which file is missing
    if removed:
        raise InputError(removed)
    kind = checkpoint_kind(spec)
    if kind in ("preset", "json"):
        raise InputError(f"{spec}: a {kind} has shapes but no weights; use a checkpoint directory")
    torch_dtype = parse_dtype(dtype)
    if kind in ("hf", "hub"):
        return _load_hf(spec, torch_dtype, device, online, trust_remote_code)
    if kind == "gguf":
        return _load_gguf(spec, torch_dtype, device)
    base_spec = base_of(spec, base)
    if kind == "peft":
        return _load_peft(spec, base_spec, torch_dtype, device, merge, online, trust_remote_code)
    return FORMATS.get(kind).load(spec, base_spec, torch_dtype, device, merge, online, trust_remote_code)


def _load_hf(spec, dtype, device, online, trust_remote_code) -> Loaded:
    path = Path(spec)
    if path.is_dir() and not any(path.glob("*.safetensors")):
        pickled = any(path.glob("*.bin")) or any(path.glob("*.pt"))
        reason = " (.bin/.pt only: lnprobe never unpickles checkpoints)" if pickled else ""
        raise InputError(f"{spec}: no safetensors weights{reason}")
    config = resolve_config(spec, online=online)
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = auto_class(config).from_pretrained(
                spec,
                config=config,
                dtype=dtype if dtype is not None else "auto",
                use_safetensors=True,
                local_files_only=not online,
                trust_remote_code=trust_remote_code,
                device_map=None if torch.device(device).type == "cpu" else str(device),
            )
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        raise InputError(f"{spec}: cannot load weights ({textio.one_line(exc)})") from None
    model = _finish(model).to(device).eval()
    return Loaded(model, _load_processor(spec, online, trust_remote_code), spec, "hf")


def gguf_checkpoint(spec: str) -> Path:
    """The cached float32 safetensors copy of the GGUF file `spec` names (converted on first use)."""
    from lnprobe.models.gguf import cached_checkpoint, gguf_source

    source = gguf_source(spec)
    if source is None:
        raise InputError(f"{spec}: not a .gguf file or a folder holding one")
    return cached_checkpoint(source)


def _load_gguf(spec: str, dtype, device) -> Loaded:
    """A GGUF checkpoint as the causal LM transformers reads from it (head included), from its cached
    float32 copy; `dtype` casts after loading (default float32)."""
    from transformers import AutoModelForCausalLM

    folder = gguf_checkpoint(spec)
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=dtype or torch.float32, use_safetensors=True, local_files_only=True
            )
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        raise InputError(f"{spec}: cannot load its cached copy {folder} ({textio.one_line(exc)})") from None
    model = model.to(device).eval()
    return Loaded(model, _load_processor(str(folder), False, False), spec, "gguf")


def _load_processor(spec: str, online: bool, trust_remote_code: bool):
    try:
        with quiet_transformers():
            return AutoProcessor.from_pretrained(
                spec, local_files_only=not online, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # weights without processor files (e.g. a bare LM): callers that need one say so


def _load_peft(spec, base_spec, dtype, device, merge, online, trust_remote_code) -> Loaded:
    from peft import PeftModel

    if not (Path(spec) / "adapter_model.safetensors").is_file():
        raise InputError(f"{spec}: no adapter_model.safetensors (lnprobe never unpickles adapter .bin files)")
    loaded = load(base_spec, dtype=dtype, device=device, online=online, trust_remote_code=trust_remote_code)
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = PeftModel.from_pretrained(loaded.model, spec, is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"{spec}: cannot apply adapter to {base_spec} ({textio.one_line(exc)})") from None
    if merge:
        model = _merge_peft(model)
    return Loaded(model.eval(), loaded.processor, spec, "peft", base=base_spec)


def _merge_peft(model):
    """`merge_and_unload()`, except for LN tuning: PEFT 0.21's LN-tuning merge assumes every target has a
    `.weight` and fails on the LLaVA projector, so each wrapped module is replaced by its tuned copy."""
    from peft.tuners.ln_tuning.layer import LNTuningLayer

    base = model.get_base_model()
    wrapped = [(n, m) for n, m in base.named_modules() if isinstance(m, LNTuningLayer)]
    if not wrapped:
        return model.merge_and_unload()
    for name, module in wrapped:
        parent_name, _, attr = name.rpartition(".")
        parent = base.get_submodule(parent_name) if parent_name else base
        setattr(parent, attr, module.ln_tuning_layers[module.active_adapters[0]])
    return base
