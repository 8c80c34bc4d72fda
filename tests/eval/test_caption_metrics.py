"""CIDEr-D and BLEU on hand-worked corpora, the PTB-style tokeniser, and agreement with pycocoevalcap."""

import math
import random

import pytest

from lnprobe.eval.captions import bleu, caption_scores, cider_d, ptb_tokenize


def test_ptb_tokenize_hand_worked():
    assert ptb_tokenize("A man's dog, running -- isn't it \"great\"?") == [
        "a", "man", "'s", "dog", "running", "is", "n't", "it", "great",
    ]  # fmt: skip
    assert ptb_tokenize("He cannot pay $3.50 for 1,000 black-and-white (old) photos...") == [
        "he", "can", "not", "pay", "$", "3.50", "for", "1,000", "black-and-white", "old", "photos",
    ]  # fmt: skip
    assert ptb_tokenize("...!?") == []


def _t(text):
    return text.split()


def test_bleu_hand_worked():
    b = bleu({0: _t("a b c d")}, {0: [_t("a b c e")]})
    assert b[0] == pytest.approx(3 / 4) and b[1] == pytest.approx(math.sqrt(3 / 4 * 2 / 3))
    assert b[2] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3)) and b[3] < 1e-3
    short = bleu({0: _t("a b")}, {0: [_t("a b c d"), _t("a b c d e f")]})
    assert short[0] == pytest.approx(math.exp(1 - 4 / 2))  # brevity penalty against the closest ref
    assert bleu({0: _t("x y z w")}, {0: [_t("x y z w")]})[3] == pytest.approx(1.0)
    # clipping: a repeated word counts at most as often as in the most generous reference
    assert bleu({0: _t("a a a a")}, {0: [_t("a b c d"), _t("a a e f")]})[0] == pytest.approx(0.5)


def test_cider_d_hand_worked():
    hyps = {"A": ["x", "y"], "B": ["q", "r"]}
    refs = {"A": [["x", "y"]], "B": [["z", "w"]]}
    score, per_image = cider_d(hyps, refs)
    # A: unigram and bigram cosines are 1, no 3-/4-grams: mean over n = 2/4, x10; B shares nothing
    assert per_image == pytest.approx({"A": 5.0, "B": 0.0}) and score == pytest.approx(2.5)
    # the Gaussian length penalty (lengths as bigram counts) for a hypothesis 3 words longer
    longer, _ = cider_d({"A": ["x", "y", "u", "v", "t"], "B": ["q"]}, refs)
    assert 0 < longer < 2.5
    # a one-image corpus has IDF log(1) - log(1) = 0 everywhere: CIDEr-D 0 (as the official code)
    assert cider_d({"A": ["x", "y"]}, {"A": [["x", "y"]]})[0] == 0.0
    with pytest.raises(ValueError):
        cider_d({"A": ["x"]}, {"B": [["x"]]})


def test_caption_scores_tokenise_raw_text():
    s = caption_scores({1: "A Dog.", 2: "a cat"}, {1: ["a dog", "the dog"], 2: ["A cat!", "one cat"]})
    assert s["bleu_1"] == pytest.approx(1.0) and s["n"] == 2 and s["cider_d"] > 0


def _corpus(seed):
    rng = random.Random(seed)
    words = _t("a the man dog cat on in of with red blue sits runs street grass two small large")
    ids = list(range(rng.randint(2, 25)))
    refs = {
        i: [" ".join(rng.choices(words, k=rng.randint(3, 12))) for _ in range(rng.randint(1, 5))] for i in ids
    }
    hyps = {i: [" ".join(rng.choices(words, k=rng.randint(1, 12)))] for i in ids}
    return refs, hyps


@pytest.mark.parametrize("seed", range(6))
def test_matches_pycocoevalcap_on_the_same_tokens(seed):
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    bleu_mod = pytest.importorskip("pycocoevalcap.bleu.bleu")
    refs, hyps = _corpus(seed)
    official_cider, official_per = cider_mod.Cider().compute_score(refs, hyps)
    official_bleu, _ = bleu_mod.Bleu(4).compute_score(refs, hyps, verbose=0)
    split_h = {i: h[0].split() for i, h in hyps.items()}
    split_r = {i: [r.split() for r in v] for i, v in refs.items()}
    ours, per = cider_d(split_h, split_r)
    assert ours == pytest.approx(official_cider, abs=1e-12)
    assert [per[i] for i in refs] == pytest.approx(list(official_per), abs=1e-12)
    assert bleu(split_h, split_r) == pytest.approx(official_bleu, abs=1e-12)
