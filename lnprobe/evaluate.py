"""Answer accuracy on LLaVA-format questions with short reference answers (e.g. the synthetic task's
eval.json): the prompt is the record encoded with the chat template up to where the first answer starts;
greedy decoding produces as many tokens as the reference answer has (its end-of-turn tokens excluded), and
an item is correct when those tokens are exactly the reference's. Single-turn records only."""

from __future__ import annotations

import torch

from lnprobe.data.llava import IGNORE, LlavaDataset


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
