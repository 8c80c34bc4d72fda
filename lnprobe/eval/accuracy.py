"""Answer accuracy on LLaVA-format questions with short reference answers (e.g. the synthetic task's
eval.json): the prompt is the record encoded with the chat template up to where the first answer starts;
an item is correct when greedy decoding of as many tokens as the reference answer has (its end-of-turn
tokens excluded) gives exactly the reference's, computed teacher-forced in batches, or when that greedy
answer matches the reference after VQA's answer normalisation (`lnprobe.eval.vqa.normalize_answer`: case,
punctuation, articles, number words): the normalised exact match `lnprobe eval` uses for VQA answers. The
first turn of each record is scored."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lnprobe.data.llava import LlavaDataset, reference_answer
from lnprobe.errors import InputError
from lnprobe.eval.vqa import normalize_answer


@torch.no_grad()
def answer_accuracy(
    model,
    processor,
    data: str,
    template: str = "vicuna_v1",
    image_folder: str | None = None,
    batch_size: int = 32,
) -> dict:
    """{'accuracy', 'correct', 'n', 'items': [{id, answer, prediction, correct}]}.

    Batched and teacher-forced: one forward pass per batch of records; `prediction` is the argmax at every
    answer position given the reference's earlier tokens. Greedy decoding of as many tokens emits exactly the
    reference iff every one of those argmaxes is the reference token (each step then sees the same prefix),
    so `correct` is what greedy decoding gives (tested against `model.generate`); a wrong prediction may
    differ from greedy's after its first wrong token."""
    from lnprobe.data.llava import collate

    ds = LlavaDataset(data, processor, template, image_folder=image_folder)
    tok, enc = processor.tokenizer, ds.encoder
    stop = {tok.eos_token_id, tok.pad_token_id} - {None}
    model.eval()
    items = []
    for s in range(0, len(ds), batch_size):
        rows = [ds[i] for i in range(s, min(s + batch_size, len(ds)))]
        batch = collate(rows, tok.pad_token_id, enc.image_token_id, enc.n_image_tokens)
        batch.pop("labels")
        best = model(**batch).logits.argmax(-1)
        for row, item in enumerate(rows):
            start, answer = reference_answer(item["labels"], stop)
            pred = best[row, start - 1 : start - 1 + len(answer)].tolist()
            said, wanted = tok.decode(pred), tok.decode(answer)
            exact = pred == answer
            items.append(
                {
                    "id": item["id"],
                    "answer": wanted,
                    "prediction": said,
                    "exact": exact,
                    "correct": exact or normalize_answer(said) == normalize_answer(wanted),
                }
            )
    correct = sum(it["correct"] for it in items)
    return {"accuracy": correct / len(items), "correct": correct, "n": len(items), "items": items}


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
    synthetic task and `lnprobe study --data` write them; answers are compared after VQA's answer
    normalisation, as `answer_accuracy` does. {'accuracy', 'correct', 'n', 'answers': {type: answer}}."""
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
    correct = sum(normalize_answer(guess[r["qtype"]]) == normalize_answer(r["answer"]) for r in rows)
    return {"accuracy": correct / len(rows), "correct": correct, "n": len(rows), "answers": guess}
