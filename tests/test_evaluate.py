"""Answer accuracy: prompts cut where the reference answer starts, greedy tokens compared exactly."""

import json

import torch

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.evaluate import answer_accuracy
from lnprobe.models import load


def test_answer_accuracy_matches_teacher_forced_argmax(tiny_dir, tmp_path):
    data = write_synth(tmp_path / "data", SynthConfig(n=20, seed=4))
    loaded = load(tiny_dir)
    result = answer_accuracy(loaded.model, loaded.processor, str(data / "eval.json"))
    records = json.loads((data / "eval.json").read_text())
    assert result["n"] == len(records) and result["correct"] == sum(it["correct"] for it in result["items"])
    tok = loaded.processor.tokenizer
    for it, rec in zip(result["items"], records, strict=True):
        assert it["answer"].strip() == rec["answer"]
        assert it["correct"] == (it["prediction"] == it["answer"])
    # the first generated token is the argmax of the model's next-token logits after the prompt
    from lnprobe.data.llava import IGNORE, LlavaDataset

    ds = LlavaDataset(str(data / "eval.json"), loaded.processor)
    item = ds[0]
    start = int((item["labels"] != IGNORE).nonzero()[0])
    with torch.no_grad():
        logits = loaded.model(
            input_ids=item["input_ids"][:start][None], pixel_values=item["pixel_values"][None]
        ).logits
    first = tok.decode([int(logits[0, -1].argmax())])
    assert result["items"][0]["prediction"].startswith(first)

    # a model that is made to emit the reference answers scores 1.0
    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def eval(self):
            return self

        def generate(self, input_ids, max_new_tokens, **kw):
            labels = ds[self.calls]["labels"]
            self.calls += 1
            answer = [t for t in labels.tolist() if t != IGNORE][:max_new_tokens]
            return torch.cat([input_ids, torch.tensor([answer])], dim=1)

    assert answer_accuracy(Oracle(), loaded.processor, str(data / "eval.json"))["accuracy"] == 1.0
