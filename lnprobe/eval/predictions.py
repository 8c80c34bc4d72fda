"""Predictions made elsewhere (or by an earlier `lnprobe eval`), matched to a benchmark's items by id.

Accepted: lnprobe's results.json; a JSON list or JSON-lines file of objects with an id (`id`,
`question_id` or `image_id`) and a text (`prediction`, `answer`, `text` or `caption`) — so the official
VQA and COCO results formats and LLaVA's answer files read as they are. An item's id is lnprobe's (as in
results.json) or, when unique, its question_id."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.eval.bench.base import EvalItem, read_json, read_jsonl

ID_KEYS = ("id", "question_id", "image_id")
TEXT_KEYS = ("prediction", "answer", "text", "caption")


def _records(path: Path) -> list[tuple[str, object]]:
    if not path.is_file():
        raise InputError(f"{path}: no such predictions file")
    if path.suffix == ".jsonl":
        return [(f"line {no}", rec) for no, rec in read_jsonl(path)]
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("items"), list):  # lnprobe results.json
        data = data["items"]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of predictions (or lnprobe's results.json)")
    return [(f"record {i}", rec) for i, rec in enumerate(data)]


def read_predictions(path: str | Path, items: list[EvalItem], strict: bool = True) -> list[str]:
    """One prediction per item, in item order. InputError for records without id or text, ids that
    match no item (when `strict`), and items left without a prediction (counted, the first named)."""
    path = Path(path)
    aliases: dict[str, int] = {}
    counts = Counter(str(it.meta["question_id"]) for it in items if "question_id" in it.meta)
    unique = {q for q, c in counts.items() if c == 1}
    for i, it in enumerate(items):
        aliases[it.id] = i
        q = str(it.meta.get("question_id"))
        if q in unique and q not in aliases:
            aliases[q] = i
    found: dict[int, str] = {}
    unknown = []
    for where, rec in _records(path):
        key = next((rec[k] for k in ID_KEYS if isinstance(rec, dict) and k in rec), None)
        text = next(
            (rec[k] for k in TEXT_KEYS if isinstance(rec, dict) and isinstance(rec.get(k), str)), None
        )
        if key is None or text is None:
            raise InputError(
                f"{path}: {where}: needs an id ({', '.join(ID_KEYS)}) and a text ({', '.join(TEXT_KEYS)})"
            )
        index = aliases.get(str(key))
        if index is None:
            unknown.append(str(key))
        else:
            found[index] = text
    if unknown and strict:
        raise InputError(
            f"{path}: {len(unknown)} prediction(s) match no item of the benchmark (first id {unknown[0]})"
        )
    missing = [items[i].id for i in range(len(items)) if i not in found]
    if missing:
        raise InputError(
            f"{path}: {len(missing)} of {len(items)} items have no prediction (first: {missing[0]})"
        )
    return [found[i] for i in range(len(items))]
