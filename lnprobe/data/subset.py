"""`lnprobe data subset`: the paper's data study — subsets of the instruction data by kind, with an equal
number of records per kind or an equal number of tokens per kind, seeded, written in LLaVA format.

A record's kind is its `kind` field, else the stem of the file it came from (so the released parts
conversation_58k.json, detail_23k.json, complex_reasoning_77k.json can be passed as they are). Tokens are
counted with a model's tokenizer over the record's turns (the `<image>` placeholder excluded). Records are
taken in a seeded order per kind; the subset keeps every field of the chosen records.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from lnprobe.config import at_least, option, seed_field, validate
from lnprobe.errors import InputError
from lnprobe.io import Output
from lnprobe.provenance import provenance
from lnprobe.textio import one_line


@dataclass(frozen=True)
class SubsetConfig:
    data: tuple[str, ...] = option(help="LLaVA JSON/JSONL file(s); kind = `kind` field or file stem.")
    out: str = option(help="Output LLaVA JSON (plus OUT.meta.json).")
    per_kind: int | None = at_least(1, None, "Equal number of records per kind.")
    # needs `model`
    tokens_per_kind: int | None = at_least(1, None, "Equal number of tokens per kind.")
    model: str | None = option(None, "Checkpoint whose tokenizer counts tokens.")
    seed: int = seed_field(0, "Seed of the draw.")
    force: bool = option(False, "Replace OUT if it exists.", switch=True)

    def __post_init__(self) -> None:
        validate(self)
        if (self.per_kind is None) == (self.tokens_per_kind is None):
            raise InputError("give exactly one of --per-kind and --tokens-per-kind")
        if (self.per_kind or self.tokens_per_kind or 0) < 1:
            raise InputError("--per-kind / --tokens-per-kind must be >= 1")
        if self.tokens_per_kind is not None and not self.model:
            raise InputError("--tokens-per-kind needs --model (its tokenizer counts the tokens)")
        self.output().check()

    def output(self) -> Output:
        return Output(Path(self.out), "data subset", self.force, (*self.data, self.model), is_file=True)


def read_kinds(paths: tuple[str, ...]) -> dict[str, list[dict]]:
    """{kind: [raw record]} from LLaVA JSON / JSONL files (each record validated as training data is)."""
    from lnprobe.data.llava import _record, raw_records

    kinds: dict[str, list[dict]] = {}
    for name in paths:
        path = Path(name)
        items = raw_records(path)
        for i, item in enumerate(items):
            _record(path, i, item)
            kinds.setdefault(str(item.get("kind") or path.stem), []).append(item)
    return kinds


def _text(item: dict) -> str:
    from lnprobe.data.llava import IMAGE

    return "\n".join(turn["value"].replace(IMAGE, "") for turn in item["conversations"])


def make_subset(cfg: SubsetConfig) -> dict:
    """Write the subset (LLaVA JSON) and OUT.meta.json (config, per-kind counts and tokens, provenance)."""
    kinds = read_kinds(cfg.data)
    count = _tokenizer(cfg.model) if cfg.model else None
    rng = random.Random(cfg.seed)
    chosen, summary = [], {}
    for kind in sorted(kinds):
        order = list(kinds[kind])
        rng.shuffle(order)
        if cfg.per_kind is not None:
            if len(order) < cfg.per_kind:
                raise InputError(
                    f"kind {kind!r} has {len(order)} records, fewer than --per-kind {cfg.per_kind}"
                )
            picked = order[: cfg.per_kind]
        else:
            picked, total = [], 0
            for item in order:
                if total >= cfg.tokens_per_kind:
                    break
                picked.append(item)
                total += count(_text(item))
            if total < cfg.tokens_per_kind:
                raise InputError(f"kind {kind!r} has only {total} tokens, fewer than --tokens-per-kind")
        tokens = sum(count(_text(it)) for it in picked) if count else None
        summary[kind] = {"records": len(picked), "tokens": tokens, "available": len(order)}
        chosen += picked
    out = Path(cfg.out)
    meta = {
        "command": "data subset",
        "config": asdict(cfg),
        "kinds": summary,
        "provenance": provenance(seed=cfg.seed),
    }
    with cfg.output().build() as tmp:
        (tmp / out.name).write_text(json.dumps(chosen, indent=1) + "\n")
        (tmp / out.with_suffix(".meta.json").name).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _tokenizer(spec: str):
    from transformers import AutoTokenizer

    from lnprobe.models.load import checkpoint_kind

    checkpoint_kind(spec)  # a clear error for a bad spec
    try:
        tok = AutoTokenizer.from_pretrained(spec, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"--model {spec}: no tokenizer ({one_line(exc)})") from None
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
