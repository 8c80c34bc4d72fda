"""Answer accuracy on LLaVA-format questions with short reference answers (e.g. the synthetic task's
eval.json): the prompt is the record encoded with the chat template up to where the first answer starts;
greedy decoding produces as many tokens as the reference answer has (its end-of-turn tokens excluded), and
an item is correct when those tokens are exactly the reference's. Single-turn records only."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lnprobe.data.llava import IGNORE, LlavaDataset
from lnprobe.errors import InputError


@torch.no_grad()
def answer_accuracy(
    model, processor, data: str, template: str = "vicuna_v1", image_folder: str | None = None
) -> dict:
    """{'accuracy', 'correct', 'n', 'items': [{id, answer, prediction, correct}]}."""
    ds = LlavaDataset(data, processor, template, image_folder=image_folder)
    tok = processor.tokenizer
    stop = {tok.eos_token_id, tok.pad_token_id} - {None}
    model.eval()
    items = []
    for i in range(len(ds)):
        item = ds[i]
        ids, labels = item["input_ids"], item["labels"]
        start = int((labels != IGNORE).nonzero()[0])
        answer = [t for t in labels[start:].tolist() if t != IGNORE and t not in stop]
        answer = answer[: _first_gap(labels[start:])]
        prompt = ids[:start].unsqueeze(0)
        extra = {"pixel_values": item["pixel_values"].unsqueeze(0)} if "pixel_values" in item else {}
        out = model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=len(answer),
            min_new_tokens=len(answer),
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            **extra,
        )
        pred = out[0, prompt.shape[1] :].tolist()
        items.append(
            {
                "id": item["id"],
                "answer": tok.decode(answer),
                "prediction": tok.decode(pred),
                "correct": pred == answer,
            }
        )
    correct = sum(it["correct"] for it in items)
    return {"accuracy": correct / len(items), "correct": correct, "n": len(items), "items": items}


def _first_gap(labels: torch.Tensor) -> int:
    """Length of the first run of answer tokens (the first assistant turn)."""
    run = 0
    for t in labels.tolist():
        if t == IGNORE:
            break
        run += 1
    return run


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (good at small n and near 0 or 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def majority_baseline(train: str | Path, evaluation: str | Path) -> dict:
    """Accuracy of answering each held-out question with the most common training answer to its question
    type. Types come from the records' `qtype` (eval) and `qtypes` (one per training turn) fields, as the
    synthetic task writes them. {'accuracy', 'correct', 'n', 'answers': {type: answer}}."""
    from collections import Counter, defaultdict

    from lnprobe.textio import read_json

    counts: dict[str, Counter] = defaultdict(Counter)
    for r in read_json(Path(train)):
        answers = [t["value"] for t in r["conversations"] if t["from"] == "gpt"]
        for qtype, answer in zip(r.get("qtypes", []), answers, strict=False):
            counts[qtype][answer] += 1
    guess = {q: c.most_common(1)[0][0] for q, c in counts.items()}
    rows = read_json(Path(evaluation))
    missing = sorted({r.get("qtype") for r in rows} - set(guess), key=str)
    if missing:
        raise InputError(f"{evaluation}: question type(s) {missing} have no training answers in {train}")
    correct = sum(guess[r["qtype"]] == r["answer"] for r in rows)
    return {"accuracy": correct / len(rows), "correct": correct, "n": len(rows), "answers": guess}
