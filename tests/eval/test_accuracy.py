"""Answer accuracy: prompts cut where the reference answer starts, greedy tokens compared exactly."""

import json

import pytest
import torch

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.eval.accuracy import answer_accuracy
from lnprobe.models import load


def _greedy_reference(model, processor, path) -> list[bool]:
    """Per record: does one-at-a-time greedy decoding (model.generate) of as many tokens as the reference
    answer has emit exactly the reference answer?"""
    from lnprobe.data.llava import LlavaDataset
    from lnprobe.eval.accuracy import reference_answer

    tok = processor.tokenizer
    ds = LlavaDataset(str(path), processor)
    out = []
    for i in range(len(ds)):
        item = ds[i]
        start, answer = reference_answer(item["labels"], {tok.eos_token_id})
        prompt = item["input_ids"][:start][None]
        gen = model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            pixel_values=item["pixel_values"][None],
            max_new_tokens=len(answer),
            min_new_tokens=len(answer),
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        out.append(gen[0, prompt.shape[1] :].tolist() == answer)
    return out


def test_answer_accuracy_equals_greedy_decoding_one_at_a_time(tiny_dir, tmp_path):
    """Planted and null: a model trained on eval's own answers (some right, some wrong) and an untrained one;
    the batched teacher-forced scores equal one-at-a-time greedy decoding item by item on both."""
    from lnprobe.data.llava import LlavaDataset

    data = write_synth(tmp_path / "data", SynthConfig(n=40, seed=4))
    path = data / "eval.json"
    loaded = load(tiny_dir)
    records = json.loads(path.read_text())
    fresh = answer_accuracy(loaded.model, loaded.processor, str(path), batch_size=3)
    assert fresh["n"] == len(records) and fresh["correct"] == sum(it["correct"] for it in fresh["items"])
    assert [it["correct"] for it in fresh["items"]] == _greedy_reference(loaded.model, loaded.processor, path)
    for it, rec in zip(fresh["items"], records, strict=True):
        assert it["answer"].strip() == rec["answer"] and it["correct"] == (it["prediction"] == it["answer"])
    # teach the model half of eval's answers: the score rises, and still equals greedy decoding
    ds = LlavaDataset(str(path), loaded.processor)
    model = loaded.model.train().requires_grad_(True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        for i in range(0, len(ds), 2):
            item = ds[i]
            loss = model(input_ids=item["input_ids"][None], pixel_values=item["pixel_values"][None],
                         labels=item["labels"][None]).loss  # fmt: skip
            loss.backward()
            opt.step()
            opt.zero_grad()
    taught = answer_accuracy(model, loaded.processor, str(path), batch_size=4)
    assert taught["correct"] > fresh["correct"] and taught["correct"] < taught["n"]
    assert [it["correct"] for it in taught["items"]] == _greedy_reference(
        model.eval(), loaded.processor, path
    )


def test_wilson_interval_matches_reference_values():
    from lnprobe.eval.accuracy import wilson

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
    from lnprobe.eval.accuracy import majority_baseline

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
    from lnprobe.eval.accuracy import majority_baseline

    data = write_synth(tmp_path / "d", SynthConfig(n=600, seed=1))
    got = majority_baseline(data / "instruct.json", data / "eval.json")
    assert 0.25 < got["accuracy"] < 0.50, got


def test_training_reports_the_answer_accuracy_of_its_checkpoint(tmp_path):
    """`train --eval-data` scores held-out answers in its evaluation pass (`eval_accuracy`, in result.json,
    metrics.jsonl and the sweep table): it equals `answer_accuracy` of the saved checkpoint, with a batch
    size and padding of its own, before and after training that moves it off 0 and 1."""
    from lnprobe.train import TrainConfig, train
    from lnprobe.train.state import latest_checkpoint

    data = write_synth(tmp_path / "data", SynthConfig(n=40, seed=3))
    common = dict(data=str(data / "eval.json"), eval_data=str(data / "eval.json"), batch_size=5, seed=0)
    common |= dict(regime="full", lr=3e-3, progress=False, template="chat", out=str(tmp_path / "run"))
    result = train(TrainConfig(max_steps=60, **common))
    model = load(str(latest_checkpoint(tmp_path / "run")))
    expected = answer_accuracy(model.model, model.processor, str(data / "eval.json"), template="chat")
    assert 0 < expected["accuracy"] < 1 and result.eval_accuracy == expected["accuracy"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["eval_accuracy"] == result.eval_accuracy != rows[0]["eval_accuracy"]
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["eval_accuracy"] == result.eval_accuracy


def test_majority_baseline_matches_answers_after_vqa_normalisation(tmp_path):
    from lnprobe.eval.accuracy import majority_baseline

    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "yes"}]
    train = [{"id": str(i), "qtypes": ["is there"], "conversations": turns} for i in range(3)]
    evaluation = [
        {"id": "a", "qtype": "is there", "answer": "Yes.", "conversations": []},  # case and punctuation
        {"id": "b", "qtype": "is there", "answer": "no", "conversations": []},
    ]
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    got = majority_baseline(tmp_path / "train.json", tmp_path / "eval.json")
    assert got["correct"] == 1 and got["accuracy"] == 0.5
