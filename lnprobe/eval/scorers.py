"""Benchmark scorers as pure functions of (prediction text, reference) pairs.

POPE — each prediction is reduced to yes/no the way the POPE reference evaluation (POPE's evaluate.py, and
LLaVA's eval_pope.py) does: keep the first sentence (up to the first "."), delete commas, split on single
spaces; the word "no" / "not" / "No" → no, otherwise yes. Only commas are removed, so "No!" reads as yes,
as there. With "yes"
as the positive class: accuracy, precision, recall, F1 and the share of yes answers, plus `unclear`: how
many answers contain no yes / no / not word at all (empty ones too), which that rule scores as yes.

MME — as MME's eval_tool/calculation.py: a response is yes / no when (lower-cased) it is exactly that word,
else by whether its first four characters contain "yes" or "no" (in that order); anything else is "other"
and counts as wrong. lnprobe also strips surrounding whitespace first (the official script does not; the
answers `lnprobe eval` generates are stripped anyway, so only hand-made answer files can differ).
Per subtask: accuracy over questions and accuracy+ over images (both of an image's questions right); the
subtask score is 100 x (accuracy + accuracy+); perception and cognition totals sum their subtasks.
"""

from __future__ import annotations

import re
from collections import defaultdict

PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def pope_answer(text: str) -> str:
    first = text.split(".")[0]
    words = first.replace(",", "").split(" ")
    return "no" if any(w in ("No", "not", "no") for w in words) else "yes"


def pope_clear(text: str) -> bool:
    """Does the answer say yes or no at all (a word "yes" / "no" / "not", any case)?"""
    return any(w in ("yes", "no", "not") for w in re.findall(r"[a-z]+", text.lower()))


def pope_scores(predictions: list[str], labels: list[str]) -> dict:
    """POPE metrics; `labels` are "yes" / "no"."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError("need as many predictions as labels, at least one")
    bad = sorted({lab for lab in labels if lab not in ("yes", "no")})
    if bad:
        raise ValueError(f"labels must be yes/no, got {bad}")
    answers = [pope_answer(p) for p in predictions]
    tp = sum(a == "yes" and y == "yes" for a, y in zip(answers, labels, strict=True))
    fp = sum(a == "yes" and y == "no" for a, y in zip(answers, labels, strict=True))
    tn = sum(a == "no" and y == "no" for a, y in zip(answers, labels, strict=True))
    fn = sum(a == "no" and y == "yes" for a, y in zip(answers, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": answers.count("yes") / len(answers),
        "n": len(labels),
        # answers with neither a yes nor a no word (empty ones too): POPE's rule scores them "yes"
        "unclear": sum(not pope_clear(p) for p in predictions),
        "counts": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def mme_answer(text: str) -> str:
    t = text.strip().lower()
    if t in ("yes", "no"):
        return t
    head = t[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def mme_scores(items: list[dict]) -> dict:
    """`items`: {subtask, image, prediction, answer} (answer "Yes"/"No", two questions per image)."""
    by_task: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    unparsed = 0
    for it in items:
        pred = mme_answer(it["prediction"])
        unparsed += pred == "other"
        by_task[it["subtask"]][it["image"]].append(pred == it["answer"].strip().lower())
    tasks = {}
    for task, images in by_task.items():
        questions = [ok for oks in images.values() for ok in oks]
        acc = sum(questions) / len(questions)
        acc_plus = sum(all(oks) for oks in images.values()) / len(images)
        tasks[task] = {
            "accuracy": acc,
            "accuracy_plus": acc_plus,
            "score": 100 * (acc + acc_plus),
            "questions": len(questions),
            "images": len(images),
        }
    return {
        "subtasks": tasks,
        "perception": float(sum(tasks[t]["score"] for t in PERCEPTION if t in tasks)),
        "cognition": float(sum(tasks[t]["score"] for t in COGNITION if t in tasks)),
        "unparsed": unparsed,
    }
