"""What every probe shares: its inputs (`ProbeInputs`), the model loaded with its processor, and one seeded
batcher, so that probes given the same `ProbeInputs` see the same examples in the same order.

The examples are the first `n` of a seeded permutation of the data, cut into minibatches of `batch_size`.
Nothing is dropped: a probe whose estimator needs at least `min_last` rows per minibatch (CKA with one row
per example needs 4) gets a too-small trailing minibatch merged into the one before it, which keeps the
examples and only changes the grouping (every probe statistic is a mean over examples or minibatch
terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lnprobe.config import at_least, option, ranged, seed_field, validate
from lnprobe.errors import InputError


@dataclass(frozen=True)
class ProbeInputs:
    """The inputs of a probe run; `lnprobe claims` builds one and hands it to every probe."""

    # LLaVA JSON/JSONL records (or, for a text model, a JSONL of {"text": ...} lines)
    data: str = option(help="LLaVA JSON/JSONL inputs (seeded subset).")
    n: int = at_least(1, 32, "Examples (the first n of a seeded order).")
    batch_size: int = at_least(1, 4, "Examples per forward pass.")
    template: str = option("vicuna_v1", "Chat template for the data.")
    image_folder: str | None = option(None, "Image folder (default: the data file's).")
    max_length: int = at_least(2, 2048, "Tokens per example.")
    seed: int = seed_field(0, "Seed for the example order.")
    device: str = option("cpu", "cpu or cuda.")
    progress: bool = option(True, "Show progress bars.")

    def __post_init__(self) -> None:
        validate(self)
        if not self.data:
            raise InputError("--data is required (LLaVA JSON/JSONL inputs)")

    def files(self) -> tuple[str | None, ...]:
        """The input files (never to be written over by a probe's output)."""
        return (self.data, self.image_folder)


SINK_FACTOR = 20.0  # lnprobe.capture.sinks.DEFAULT_FACTOR (this module stays torch-free)


def keep_sink_tokens_field():
    """The `--keep-sink-tokens` switch of the probes whose statistics leave massive tokens out."""
    return option(
        False,
        "Keep massive-activation (attention-sink) tokens in the statistics; by default a token whose "
        "hidden-state norm exceeds --sink-factor x its example's median at any compared site is left out "
        "(and listed in the output's sink_tokens).",
        switch=True,
    )


def sink_factor_field():
    """`--sink-factor`: the sink rule's threshold, as a multiple of the example's median token norm."""
    return ranged(
        SINK_FACTOR,
        1.0,
        help="Sink rule: a token is massive when its hidden-state L2 norm exceeds this many times the "
        "median norm of its example's tokens of the same kind (image tokens, or the others) at a compared "
        "site.",
    )


def sink_rule(cfg):
    """The `lnprobe.capture.SinkRule` of a probe config with `keep_sink_tokens` and `sink_factor`."""
    from lnprobe.capture.sinks import SinkRule

    return SinkRule(cfg.sink_factor, exclude=not cfg.keep_sink_tokens)


PATH_FIELDS = ("a", "b", "ckpt", "base", "out", "save_activations")  # a probe config's paths (besides inputs)


def saved_config(config: dict) -> dict:
    """A probe's config (as a dict) as its JSON file in `config["out"]` records it: every path relative to
    that folder when it lies in the results tree being written, else absolute (`lnprobe.io.saved_path`), so
    the output can be moved or copied; read back with `lnprobe.io.read_path` from the file's folder."""
    from lnprobe.io import saved_path

    out = config["out"]
    saved = {k: saved_path(v, out) if k in PATH_FIELDS else v for k, v in config.items()}
    inputs = config.get("inputs")
    if isinstance(inputs, dict):
        saved["inputs"] = {**inputs, **{k: saved_path(inputs.get(k), out) for k in ("data", "image_folder")}}
    return saved


def labelled_models(items: tuple[str, ...]) -> dict[str, str]:
    """{label: checkpoint} of `--model LABEL=PATH` items, in the order given; InputError for none, an item
    that is not LABEL=PATH, or a label given twice (the probes that compare several models)."""
    if not items:
        raise InputError("--model is required (LABEL=PATH, e.g. --model base=DIR --model ln=DIR)")
    out: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        label, path = label.strip(), path.strip()
        if not sep or not label or not path:
            raise InputError(f"--model {item!r}: expected LABEL=PATH")
        if label in out:
            raise InputError(f"--model {label}={path}: label given twice (labels must be unique)")
        out[label] = path
    return out


def load_multimodal(spec: str, device: str = "cpu", **options):
    """`load(spec)`, in eval mode; InputError if it has no multi-modal processor (LLaVA data needs one).
    `options` go to `load` (dtype, online, ...)."""
    from lnprobe.models import load

    loaded = load(spec, device=device, **options)
    if loaded.processor is None or not hasattr(loaded.processor, "tokenizer"):
        raise InputError(f"{spec}: needs a multi-modal processor (LLaVA-format data)")
    loaded.model.eval()
    return loaded


def example_chunks(count: int, inputs: ProbeInputs, min_last: int = 1) -> list[list[int]]:
    """Indices of the first `n` examples of the seeded order, in minibatches (a trailing one smaller than
    `min_last` merged into the one before)."""
    import torch

    order = torch.randperm(count, generator=torch.Generator().manual_seed(inputs.seed))[: inputs.n].tolist()
    chunks = [order[s : s + inputs.batch_size] for s in range(0, len(order), inputs.batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < min_last:
        chunks[-2:] = [chunks[-2] + chunks[-1]]
    return chunks


def probe_batches(
    inputs: ProbeInputs, processor, min_last: int = 1, text_max_length: int | None = None
) -> list[dict]:
    """The collated minibatches of `inputs`: LLaVA records through a multi-modal processor, or texts
    through a text model's tokenizer (truncated to `text_max_length`, default `max_length`)."""
    return probe_minibatches(inputs, processor, min_last, text_max_length)[0]


def probe_minibatches(
    inputs: ProbeInputs, processor, min_last: int = 1, text_max_length: int | None = None
) -> tuple[list[dict], list[list[int]]]:
    """`probe_batches`, and for each minibatch which example each of its rows is (its index in the data
    file: the record's position, or the text's line among the non-empty ones)."""
    from lnprobe.data.llava import LlavaDataset, collate

    if not hasattr(processor, "image_processor"):
        texts = read_texts(inputs.data)
        chunks = example_chunks(len(texts), inputs, min_last)
        batches = [
            dict(
                processor(
                    [texts[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=text_max_length or inputs.max_length,
                    return_tensors="pt",
                )
            )
            for chunk in chunks
        ]
        return batches, chunks
    data = LlavaDataset(
        inputs.data, processor, inputs.template, inputs.max_length, inputs.image_folder, decode_all=False
    )
    chunks = example_chunks(len(data), inputs, min_last)
    data.check([i for c in chunks for i in c])  # only the images these examples use
    enc, pad = data.encoder, processor.tokenizer.pad_token_id
    batches = [collate([data[i] for i in c], pad, enc.image_token_id, enc.n_image_tokens) for c in chunks]
    return batches, [[data.records[i].index for i in c] for c in chunks]


def read_texts(path: str | Path) -> list[str]:
    """Texts for a text model: a JSONL of {"text": ...} lines, or the turns of LLaVA records."""
    from lnprobe.data.llava import IMAGE, read_records
    from lnprobe.textio import parse_json, read_text

    path = Path(path)
    if path.suffix == ".jsonl":
        lines = read_text(path, "text data").splitlines()
        rows = [parse_json(line, f"{path}: line {i}") for i, line in enumerate(lines, 1) if line.strip()]
        if rows and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in rows):
            return [r["text"] for r in rows]
    return [
        " ".join(part.replace(IMAGE, "").strip() for turn in r.turns for part in turn)
        for r in read_records(path)
    ]
