"""VQA accuracy: the official normalisation rules and the leave-one-out average, on hand-worked cases."""

import pytest

from lnprobe.eval.vqa import CONTRACTIONS, normalize_answer, process_punctuation, vqa_accuracy, vqa_scores


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two", "2"),  # number words to digits
        ("none", "0"),
        ("The dog.", "dog"),  # articles dropped, final period stripped
        ("yes!", "yes"),  # "!" not touching a space becomes a space
        ("dont", "don't"),  # contraction restored
        ("3.5", "3.5"),  # a period before a digit stays
        ("1,000", "1000"),  # digit-comma-digit: every mark is deleted, not spaced
        ("a/b", "b"),  # "/" becomes a space, then the article "a" goes
        ("hot-dog", "hot dog"),
        ("red, white", "red white"),  # ", " touches a space: deleted
        ("  Tennis\nracket\t", "tennis racket"),
        ("An apple", "apple"),
    ],
)
def test_prediction_normalisation(raw, expected):
    assert normalize_answer(raw) == expected


def test_contraction_table_and_punctuation_quirks():
    assert len(CONTRACTIONS) > 100 and CONTRACTIONS["somebody'd"] == "somebodyd"  # kept as official
    assert all(" " not in k for k in CONTRACTIONS)
    assert process_punctuation("end. of.") == "end of"  # periods not before a digit go


@pytest.mark.parametrize("k", range(11))
def test_leave_one_out_average_closed_form(k):
    answers = ["cat"] * k + ["dog"] * (10 - k)
    # the k annotators who said cat leave k-1 matches among the other nine, the rest leave k
    expected = (k * min(1, (k - 1) / 3) + (10 - k) * min(1, k / 3)) / 10 if k else 0.0
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)
    assert {1: 0.3, 2: 0.6, 3: 0.9, 4: 1.0}.get(k, expected) == pytest.approx(expected)


def test_answers_are_only_punctuation_processed_and_only_when_they_disagree():
    assert vqa_accuracy("two", ["2"] * 10) == 1.0  # the prediction's "two" becomes "2"
    assert vqa_accuracy("two", ["two"] * 10) == 0.0  # the answers keep their number words
    assert vqa_accuracy("hot-dog", ["hot-dog"] * 10) == 0.0  # unanimous answers are not processed
    assert vqa_accuracy("hot-dog", ["hot-dog"] * 9 + ["sandwich"]) == 1.0  # disagreeing ones are


def test_scores_per_answer_type():
    items = [
        {"prediction": "yes", "answers": ["yes"] * 10, "answer_type": "yes/no"},
        {"prediction": "no", "answers": ["yes"] * 10, "answer_type": "yes/no"},
        {"prediction": "2", "answers": ["2"] * 2 + ["3"] * 8, "answer_type": "number"},
    ]
    s = vqa_scores(items)
    assert s["per_answer_type"] == pytest.approx({"number": 60.0, "yes/no": 50.0})
    assert s["accuracy"] == pytest.approx(100 * (1 + 0 + 0.6) / 3)
    with pytest.raises(ValueError):
        vqa_accuracy("x", ["x"])
