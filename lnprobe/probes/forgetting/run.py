"""The forgetting probe's runner (`lnprobe forgetting BASE TUNED --text FILE --out DIR`): the held-out text
loss and next-token accuracy of the model before finetuning (BASE) and after (TUNED), window by window,
and their paired change (definitions in `lnprobe.probes.forgetting.stats`).

The text: a UTF-8 `.txt` file (one document), a JSONL or JSON file of `{"text": ...}` records (each record
a document: the miniature's `text.jsonl` corpus format), or the built-in `python-docs` (`python_docs_text`,
one document). It is tokenised once with BASE's tokenizer (special-token strings in the text are read as
plain text; no BOS/EOS added, except that a tokenizer which adds a BOS by default gets one at the start of
every window), each document cut into consecutive non-overlapping windows of `max_length` tokens (a
document's last window may be shorter; no window crosses documents; windows under 2 tokens dropped), and
`n` of them drawn with `seed` (all when there are no more than `n`), kept in text order.

Two passes, one model in memory at a time: BASE, freed, then TUNED (both float32, the LLM alone: a
multi-modal model gets no pixel values). TUNED's tokenizer must read the text as BASE's does (the same ids
on a sample of the text, the same token for every id the windows use), else one-line InputError naming
both models.
"""

from __future__ import annotations

import gc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from lnprobe.errors import InputError
from lnprobe.probes.forgetting.config import PYTHON_DOCS, ForgettingConfig
from lnprobe.probes.registry import ProbeResult

CHECK_CHARS = 4000  # characters of the text re-tokenised with TUNED's tokenizer


@dataclass
class ForgettingResult(ProbeResult):
    """OUT/forgetting.json. `windows`: where each scored window lies (`document`, `start` token, `tokens`);
    `per_window`: base_loss, tuned_loss, base_accuracy, tuned_accuracy (one value per window, in order);
    `summary`: `stats.compare`'s numbers plus `tokens` (the windows' total) and `max_length`."""

    FILE = "forgetting.json"
    config: dict
    windows: list[dict]
    per_window: dict[str, list[float]]
    provenance: dict
    summary: dict


# -- the text ------------------------------------------------------------------------------------------------


def python_docs_text() -> str:
    """The Python documentation's topic help (`pydoc_data.topics.topics`, what `help("if")` shows: the
    language reference's sections), its values joined by blank lines: public-domain English (with some
    code) that ships with Python itself, so it is there offline on every machine."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip() for key in sorted(topics))


def read_text_spec(text: str) -> list[str]:
    """The documents of a `--text` spec: `python-docs` (one document), a JSONL / JSON file of
    `{"text": ...}` records (one document per record), any other file as UTF-8 text (one document).
    InputError for a missing or unreadable file, a record without a string `text`, or no text at all."""
    from lnprobe.textio import parse_json, read_text

    if text == PYTHON_DOCS:
        return [python_docs_text()]
    path = Path(text)
    raw = read_text(path, "text file")
    if path.suffix == ".jsonl":
        lines = [(i, line) for i, line in enumerate(raw.splitlines(), 1) if line.strip()]
        docs = [_record_text(parse_json(line, f"{path}: line {i}"), f"{path}: line {i}") for i, line in lines]
    elif path.suffix == ".json":
        value = parse_json(raw, str(path))
        records = value if isinstance(value, list) else [value]
        docs = [_record_text(r, f"{path}: record {i}") for i, r in enumerate(records)]
    else:
        docs = [raw]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise InputError(f"--text {text}: no text in it")
    return docs


def _record_text(record, where: str) -> str:
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise InputError(f'{where}: expected a {{"text": ...}} record with a string text')
    return record["text"]


class Window(NamedTuple):
    document: int  # index among the documents
    start: int  # first token's offset in the document's ids
    ids: list[int]  # BOS first when the tokenizer adds one


def as_tokenizer(tokenizer):
    """A tokenizer, or a multi-modal processor's."""
    return getattr(tokenizer, "tokenizer", tokenizer)


def encode(tokenizer, documents: list[str]) -> list[list[int]]:
    """Each document's token ids: no special tokens added, special-token strings read as plain text."""
    tok = as_tokenizer(tokenizer)
    return tok(documents, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]


def bos_of(tokenizer) -> int | None:
    """The BOS id when `tokenizer` adds one by default (Llama's), else None."""
    tokenizer = as_tokenizer(tokenizer)
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a")["input_ids"]
    return bos if bos is not None and ids and ids[0] == bos else None


def document_windows(tokenizer, documents: list[str], max_length: int, n: int, seed: int) -> list[Window]:
    """The windows of `documents` (module docstring): every one, or `n` drawn with `seed`, in text order.
    `tokenizer` may be a multi-modal processor (its tokenizer is used)."""
    import numpy as np

    bos = bos_of(tokenizer)
    head = [] if bos is None else [bos]
    step = max_length - len(head)
    if step < 1:
        raise InputError(f"--max-length {max_length}: no room for a token after the BOS")
    windows = [
        Window(d, s, head + ids[s : s + step])
        for d, ids in enumerate(encode(tokenizer, documents))
        for s in range(0, len(ids), step)
    ]
    windows = [w for w in windows if len(w.ids) >= 2]
    if len(windows) > n:
        keep = np.sort(np.random.default_rng(seed).choice(len(windows), size=n, replace=False))
        windows = [windows[i] for i in keep]
    return windows


def text_windows(tokenizer, text: str, max_length: int, n: int, seed: int) -> list[list[int]]:
    """The token ids of the windows of the `--text` spec `text` (`read_text_spec`) that the forgetting
    probe scores: up to `n`, drawn with `seed`, each at most `max_length` tokens; InputError when the text
    gives no window of 2 tokens. `tokenizer` may be a multi-modal processor (its tokenizer is used)."""
    windows = document_windows(tokenizer, read_text_spec(text), max_length, n, seed)
    if not windows:
        raise InputError(f"--text {text}: fewer than 2 tokens; no window to score")
    return [w.ids for w in windows]


def same_tokens(base_tok, tuned_tok, documents: list[str], windows: list[Window], base: str, tuned: str):
    """InputError unless TUNED's tokenizer reads the text as BASE's: the same ids on the first
    `CHECK_CHARS` characters of the text, the same BOS rule, and the same token for every id used."""
    sample, left = [], CHECK_CHARS
    for doc in documents:
        if left <= 0:
            break
        sample.append(doc[:left])
        left -= len(sample[-1])
    used = sorted({i for w in windows for i in w.ids})
    base_tok, tuned_tok = as_tokenizer(base_tok), as_tokenizer(tuned_tok)
    problem = None
    if encode(base_tok, sample) != encode(tuned_tok, sample):
        problem = "gives other token ids on the text"
    elif bos_of(base_tok) != bos_of(tuned_tok):
        problem = "adds a BOS token differently"
    elif base_tok.convert_ids_to_tokens(used) != tuned_tok.convert_ids_to_tokens(used):
        problem = "maps the text's token ids to other tokens"
    if problem:
        raise InputError(
            f"the tokenizer of {tuned} (TUNED) {problem} than that of {base} (BASE); text loss compares "
            "only models with the same vocabulary"
        )


# -- the runner ----------------------------------------------------------------------------------------------


def run_forgetting(cfg: ForgettingConfig) -> ForgettingResult:
    """Score BASE, then TUNED, on the same windows; write OUT/forgetting.json; return the record."""
    from lnprobe.probes.forgetting.stats import compare, window_losses

    cfg.output().check()
    documents = read_text_spec(cfg.text)
    scores, base_tok, windows = {}, None, []
    for which, spec in (("base", cfg.base), ("tuned", cfg.tuned)):
        loaded = _load(spec, cfg.device)
        tok = _tokenizer(loaded, spec)
        if base_tok is None:
            base_tok = tok
            windows = document_windows(tok, documents, cfg.max_length, cfg.n, cfg.seed)
            if not windows:
                raise InputError(f"--text {cfg.text}: fewer than 2 tokens with {spec}'s tokenizer")
        else:
            same_tokens(base_tok, tok, documents, windows, cfg.base, cfg.tuned)
        scores[which] = window_losses(
            loaded.model,
            [w.ids for w in windows],
            cfg.batch_size,
            pad_id(base_tok),
            progress=cfg.progress,
            description=f"text loss of {spec}",
        )
        _free(loaded)
    (base_loss, base_acc), (tuned_loss, tuned_acc) = scores["base"], scores["tuned"]
    summary = compare(base_loss, tuned_loss, base_acc, tuned_acc)
    summary.update(tokens=sum(len(w.ids) for w in windows), max_length=cfg.max_length)
    record = {
        "config": _saved_config(cfg),
        "windows": [{"document": w.document, "start": w.start, "tokens": len(w.ids)} for w in windows],
        "per_window": {
            "base_loss": base_loss.tolist(),
            "tuned_loss": tuned_loss.tolist(),
            "base_accuracy": base_acc.tolist(),
            "tuned_accuracy": tuned_acc.tolist(),
        },
        "provenance": _provenance(cfg),
        "summary": summary,
    }
    _write(cfg, record)
    return ForgettingResult.from_json(record)


def _load(spec: str, device: str):
    """`load(spec)` in float32 and eval mode; InputError for a model without a language-model head."""
    from lnprobe.models import load

    loaded = load(spec, dtype="fp32", device=device)
    head = getattr(loaded.model, "get_output_embeddings", lambda: None)()
    if head is None:
        raise InputError(f"{spec}: has no language-model head (text loss needs a causal LM)")
    loaded.model.eval()
    return loaded


def _tokenizer(loaded, spec: str):
    """The tokenizer of a loaded model (a multi-modal processor's, or the processor itself)."""
    tok = as_tokenizer(loaded.processor)
    if tok is None or not callable(tok) or not hasattr(tok, "convert_ids_to_tokens"):
        raise InputError(f"{spec}: has no tokenizer")
    return tok


def pad_id(tok) -> int:
    """Any id will do (padding is masked and never scored): the pad token's, else EOS's, else 0."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tok, name, None)
        if isinstance(value, int):
            return value
    return 0


def _free(loaded) -> None:
    import torch

    del loaded.model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _saved_config(cfg: ForgettingConfig) -> dict:
    """The config as forgetting.json records it: paths relative to OUT when inside the results tree,
    else absolute (`lnprobe.io.saved_path`); `python-docs` as given."""
    from lnprobe.io import saved_path

    config = asdict(cfg)
    for key in ("base", "tuned", "text", "out"):
        if not (key == "text" and config[key] == PYTHON_DOCS):
            config[key] = saved_path(config[key], cfg.out)
    return config


def _provenance(cfg: ForgettingConfig) -> dict:
    from lnprobe.provenance import provenance

    return provenance(seed=cfg.seed, checkpoints={"base": cfg.base, "tuned": cfg.tuned})


def _write(cfg: ForgettingConfig, record: dict) -> None:
    from lnprobe.io import write_json

    with cfg.output().build() as tmp:
        write_json(tmp / "forgetting.json", record)
