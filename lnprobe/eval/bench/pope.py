"""POPE: yes/no object-existence questions on COCO val2014, one JSON-lines file per negative sampling
(coco_pope_random.json, coco_pope_popular.json, coco_pope_adversarial.json; records question_id, image,
text, label). `--data` is the folder holding them (every split present is scored) or one such file."""

from __future__ import annotations

from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.eval.bench.base import BENCHES, Bench, EvalItem, folder, read_jsonl
from lnprobe.eval.scorers import pope_answer, pope_scores

SPLITS = ("random", "popular", "adversarial")
KEYS = ("question_id", "image", "text", "label")


def _files(data: Path) -> list[tuple[str, Path]]:
    if data.is_file():
        split = next((s for s in SPLITS if s in data.stem), data.stem)
        return [(split, data)]
    if not data.is_dir():
        raise InputError(f"{data}: no such file or folder")
    found = [(s, data / f"coco_pope_{s}.json") for s in SPLITS if (data / f"coco_pope_{s}.json").is_file()]
    if not found:
        names = ", ".join(f"coco_pope_{s}.json" for s in SPLITS)
        raise InputError(f"{data}: no POPE file (expected one of {names})")
    return found


def read(data: Path) -> list[EvalItem]:
    items = []
    for split, path in _files(data):
        for no, rec in read_jsonl(path):
            if not isinstance(rec, dict) or any(k not in rec for k in KEYS):
                raise InputError(f"{path}: line {no}: not a POPE record (needs {', '.join(KEYS)})")
            if rec["label"] not in ("yes", "no"):
                raise InputError(f"{path}: line {no}: label must be yes or no, got {rec['label']!r}")
            items.append(
                EvalItem(
                    id=f"{split}/{rec['question_id']}",
                    image=str(rec["image"]),
                    question=str(rec["text"]),
                    reference=rec["label"],
                    meta={"split": split, "question_id": rec["question_id"]},
                )
            )
    if not items:
        raise InputError(f"{data}: the POPE files hold no questions")
    return items


def _unclear(text: str) -> bool:
    words = {w.strip(".,!?;:\"'").lower() for w in text.split()}
    return not words & {"yes", "no", "not"}


def score(items: list[EvalItem], predictions: list[str]) -> dict:
    splits: dict[str, dict] = {}
    for split in dict.fromkeys(it.meta["split"] for it in items):
        rows = [
            (p, it.reference) for it, p in zip(items, predictions, strict=True) if it.meta["split"] == split
        ]
        splits[split] = pope_scores([p for p, _ in rows], [y for _, y in rows])
    metrics = ("accuracy", "precision", "recall", "f1", "yes_ratio")
    mean = {m: sum(s[m] for s in splits.values()) / len(splits) for m in metrics}
    per_item = [
        {"parsed": pope_answer(p), "correct": pope_answer(p) == it.reference, "unclear": _unclear(p)}
        for it, p in zip(items, predictions, strict=True)
    ]
    scores = {**mean, "splits": splits, "unclear": sum(r["unclear"] for r in per_item)}
    return {"scores": scores, "items": per_item}


BENCHES.add(
    "pope",
    Bench(
        name="pope",
        summary="POPE object hallucination (yes/no): accuracy, precision, recall, F1, yes-ratio per split",
        read=read,
        images=lambda data: folder(data) / "val2014",
        prompt="{question}\nAnswer the question using a single word or phrase.",
        max_new_tokens=16,
        score=score,
        headline=("f1", "accuracy", "yes_ratio"),
    ),
)
