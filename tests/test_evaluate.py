"""Answer accuracy: prompts cut where the reference answer starts, greedy tokens compared exactly."""

import json

import pytest
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


def test_wilson_interval_matches_reference_values():
    from lnprobe.evaluate import wilson

    # reference values (Wilson 1927; e.g. Newcombe 1998, table I): 0/10, 5/10, 81/263
    for (k, n), (lo, hi) in {
        (0, 10): (0.0, 0.2775),
        (5, 10): (0.2366, 0.7634),
        (81, 263): (0.2553, 0.3662),
    }.items():
        got = wilson(k, n)
        assert abs(got[0] - lo) < 5e-4 and abs(got[1] - hi) < 5e-4, (k, n, got)
    lo, hi = wilson(180, 240)  # the interval narrows with n and holds the proportion
    assert lo < 0.75 < hi and hi - lo < wilson(18, 24)[1] - wilson(18, 24)[0]


def test_majority_baseline_counts_training_answers_per_type(tmp_path):
    from lnprobe.errors import InputError
    from lnprobe.evaluate import majority_baseline

    def rec(qtypes, answers):
        turns = [t for a in answers for t in ({"from": "human", "value": "q"}, {"from": "gpt", "value": a})]
        return {"id": "x", "qtypes": qtypes, "conversations": turns}

    train = [
        rec(["colour", "count"], ["red", "two"]),
        rec(["colour"], ["red"]),
        rec(["colour"], ["blue"]),
        rec(["count"], ["one"]),
        rec(["count"], ["one"]),
    ]
    evaluation = [
        {"id": str(i), "qtype": q, "answer": a, "conversations": []}
        for i, (q, a) in enumerate(
            [("colour", "red"), ("colour", "blue"), ("count", "one"), ("count", "one")]
        )
    ]
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    got = majority_baseline(tmp_path / "train.json", tmp_path / "eval.json")
    assert (
        got["answers"] == {"colour": "red", "count": "one"}
        and got["correct"] == 3
        and got["accuracy"] == 0.75
    )
    evaluation.append({"id": "9", "qtype": "shape", "answer": "circle", "conversations": []})
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    with pytest.raises(InputError, match="'shape'"):
        majority_baseline(tmp_path / "train.json", tmp_path / "eval.json")


def test_majority_baseline_of_the_synthetic_task_is_low(tmp_path):
    """The question types' answers are balanced: guessing the commonest answer per type scores ~1/3."""
    from lnprobe.evaluate import majority_baseline

    data = write_synth(tmp_path / "d", SynthConfig(n=600, seed=1))
    got = majority_baseline(data / "instruct.json", data / "eval.json")
    assert 0.25 < got["accuracy"] < 0.50, got
