"""Held-out answer accuracy: batched teacher-forced scoring (`lnprobe.eval.accuracy.answer_accuracy`)
against one-at-a-time greedy decoding (`model.generate` per question, as lnprobe did before), on the same
model and questions. Both give the same per-question verdicts (checked here, and in
tests/eval/test_accuracy.py); the ratio is the speed-up.

    python benchmarks/answer_accuracy.py runs/demo     # a finished demo: its base model and eval.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch


def greedy_one_at_a_time(model, processor, path: Path) -> list[bool]:
    from lnprobe.data.llava import LlavaDataset
    from lnprobe.eval.accuracy import reference_answer

    tok = processor.tokenizer
    ds = LlavaDataset(str(path), processor, "chat")
    out = []
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            start, answer = reference_answer(item["labels"], {tok.eos_token_id})
            prompt = item["input_ids"][:start][None]
            gen = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                 pixel_values=item["pixel_values"][None], max_new_tokens=len(answer),
                                 min_new_tokens=len(answer), do_sample=False,
                                 pad_token_id=tok.pad_token_id)  # fmt: skip
            out.append(gen[0, prompt.shape[1] :].tolist() == answer)
    return out


def main() -> None:
    from lnprobe.eval.accuracy import answer_accuracy
    from lnprobe.models import load

    demo = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    loaded = load(str(demo / "base"))
    path = demo / "data" / "eval.json"
    start = time.perf_counter()
    reference = greedy_one_at_a_time(loaded.model, loaded.processor, path)
    slow = time.perf_counter() - start
    start = time.perf_counter()
    batched = answer_accuracy(loaded.model, loaded.processor, str(path), template="chat")
    fast = time.perf_counter() - start
    same = [it["correct"] for it in batched["items"]] == reference
    print(f"{len(reference)} questions, threads {torch.get_num_threads()}")
    print(
        f"one-at-a-time greedy: {slow:.2f} s; batched teacher-forced: {fast:.2f} s; ratio {slow / fast:.1f}x"
    )
    print(f"same verdict on every question: {same} (accuracy {batched['accuracy']:.3f})")


if __name__ == "__main__":
    main()
