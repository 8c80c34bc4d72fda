"""VQAv2: the official question and annotation files (v2_OpenEnded_mscoco_val2014_questions.json,
v2_mscoco_val2014_annotations.json) in `--data`; images COCO_val2014_<12-digit id>.jpg in DATA/val2014.
Also writes vqav2_answers.json in the official results format ([{question_id, answer}])."""

from __future__ import annotations

from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.eval.bench.base import BENCHES, Bench, EvalItem, read_json
from lnprobe.eval.vqa import normalize_answer, vqa_scores

QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.json"
ANNOTATIONS = "v2_mscoco_val2014_annotations.json"


def _records(path: Path, key: str, fields: tuple[str, ...]) -> tuple[dict, list[dict]]:
    data = read_json(path)
    recs = data.get(key) if isinstance(data, dict) else None
    if not isinstance(recs, list) or not all(
        isinstance(r, dict) and all(f in r for f in fields) for r in recs
    ):
        raise InputError(f"{path}: not a VQA {key} file (needs a '{key}' list with {', '.join(fields)})")
    return data, recs


def read(data: Path) -> list[EvalItem]:
    missing = [n for n in (QUESTIONS, ANNOTATIONS) if not (data / n).is_file()]
    if missing:
        raise InputError(f"{data}: missing VQAv2 file(s) {', '.join(missing)}")
    head, questions = _records(data / QUESTIONS, "questions", ("question_id", "image_id", "question"))
    _, anns = _records(data / ANNOTATIONS, "annotations", ("question_id", "answers"))
    by_id = {a["question_id"]: a for a in anns}
    subtype = head.get("data_subtype", "val2014")
    items = []
    for q in questions:
        ann = by_id.get(q["question_id"])
        if ann is None:
            raise InputError(f"{data / ANNOTATIONS}: no annotation for question_id {q['question_id']}")
        answers = [a.get("answer") if isinstance(a, dict) else None for a in ann["answers"]]
        if len(answers) < 2 or not all(isinstance(a, str) for a in answers):
            raise InputError(
                f"{data / ANNOTATIONS}: question_id {q['question_id']}: needs >= 2 'answer' strings"
            )
        image = f"COCO_{subtype}_{int(q['image_id']):012d}.jpg"
        meta = {"question_id": q["question_id"], "answer_type": ann.get("answer_type")}
        items.append(EvalItem(str(q["question_id"]), image, q["question"], answers, meta))
    if not items:
        raise InputError(f"{data / QUESTIONS}: no questions")
    return items


def score(items: list[EvalItem], predictions: list[str]) -> dict:
    rows = [
        {"prediction": p, "answers": it.reference, "answer_type": it.meta.get("answer_type")}
        for it, p in zip(items, predictions, strict=True)
    ]
    s = vqa_scores(rows)
    per_item = [
        {"normalized": normalize_answer(p), "accuracy": acc}
        for p, acc in zip(predictions, s["item_accuracy"], strict=True)
    ]
    unparsed = sum(not r["normalized"] for r in per_item)
    scores = {"accuracy": s["accuracy"], "per_answer_type": s["per_answer_type"], "unparsed": unparsed}
    return {"scores": scores, "items": per_item}


def answers_file(items: list[EvalItem], predictions: list[str]) -> dict:
    return {
        "vqav2_answers.json": [
            {"question_id": it.meta["question_id"], "answer": p}
            for it, p in zip(items, predictions, strict=True)
        ]
    }


BENCHES.add(
    "vqav2",
    Bench(
        name="vqav2",
        summary="VQAv2: official VQA accuracy (normalised answers, min(#humans/3, 1) over 10 subsets)",
        read=read,
        images=lambda data: data / "val2014",
        prompt="{question}\nAnswer the question using a single word or phrase.",
        max_new_tokens=16,
        score=score,
        headline=("accuracy", "unparsed"),
        extra_files=answers_file,
    ),
)
