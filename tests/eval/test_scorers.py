"""Benchmark scorers against hand-worked examples."""

import pytest

from lnprobe.eval.scorers import mme_answer, mme_scores, pope_answer, pope_scores


def test_pope_answer_parsing():
    assert pope_answer("Yes, there is a dog in the image.") == "yes"
    assert pope_answer("No, there is no dog.") == "no"
    assert pope_answer("There is not a dog.") == "no"
    assert pope_answer("There is a dog. No other animals are visible.") == "yes"  # first sentence only
    assert pope_answer("Nope") == "yes"  # only the words no / not / No count
    assert pope_answer("No, it is not.") == "no" and pope_answer("no") == "no"
    assert pope_answer("No!") == "yes"  # the reference deletes commas only, so "No!" is not the word No
    assert pope_answer("NO") == "yes"  # and it is case-sensitive beyond No / no


def test_pope_scores_hand_worked():
    preds = ["Yes", "yes.", "No", "No, not at all.", "Yes", "no"]
    labels = ["yes", "yes", "yes", "no", "no", "no"]
    # answers: yes yes no no yes no → tp 2, fn 1, tn 2, fp 1
    s = pope_scores(preds, labels)
    assert s["counts"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["yes_ratio"] == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="yes/no"):
        pope_scores(["yes"], ["maybe"])
    assert s["unclear"] == 0
    odd = pope_scores(["", "Maybe.", "No!", "I see a cat, not a dog"], ["yes", "no", "no", "no"])
    assert odd["unclear"] == 2 and odd["yes_ratio"] == 0.75  # POPE's rule scores the two unclear ones yes


def test_mme_scores_hand_worked():
    assert [mme_answer(t) for t in ("Yes", " no ", "Yes, it is.", "No.", "It is yes")] == [
        "yes",
        "no",
        "yes",
        "no",
        "other",
    ]
    items = [
        # existence: image a both right, image b one right → acc 3/4, acc+ 1/2 → score 125
        {"subtask": "existence", "image": "a", "prediction": "Yes", "answer": "Yes"},
        {"subtask": "existence", "image": "a", "prediction": "No", "answer": "No"},
        {"subtask": "existence", "image": "b", "prediction": "Yes", "answer": "Yes"},
        {"subtask": "existence", "image": "b", "prediction": "Yes", "answer": "No"},
        # code_reasoning: one image, an unparseable answer → acc 1/2, acc+ 0 → score 50
        {"subtask": "code_reasoning", "image": "c", "prediction": "It prints 3", "answer": "Yes"},
        {"subtask": "code_reasoning", "image": "c", "prediction": "no", "answer": "No"},
    ]
    s = mme_scores(items)
    assert s["subtasks"]["existence"]["score"] == pytest.approx(125.0)
    assert s["subtasks"]["code_reasoning"]["score"] == pytest.approx(50.0)
    assert s["perception"] == pytest.approx(125.0) and s["cognition"] == pytest.approx(50.0)
    assert s["unparsed"] == 1
