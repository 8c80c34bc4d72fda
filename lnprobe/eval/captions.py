"""Caption metrics as the COCO caption evaluation (pycocoevalcap) computes them: BLEU-1..4 and CIDEr-D.

Tokenisation. The official pipeline runs Stanford CoreNLP's PTBTokenizer (Java) with lower-casing and
then drops punctuation tokens. `ptb_tokenize` is a pure-Python approximation: lower-case; split off the
clitics n't 's 're 've 'll 'd 'm; split cannot/gonna/wanna/gotta as PTB does; keep hyphenated words and
numbers with inner ./, as one token; drop punctuation (. , ? ! : ; - -- ... quotes and brackets). It
differs from PTB on abbreviations ("mr." loses its period), on Unicode punctuation, and on rare
Americanisations PTB applies; CIDEr/BLEU on such captions may move slightly.

BLEU — corpus level over all images: clipped n-gram counts against the most generous reference,
reference length "closest" to each hypothesis (ties to the shorter), brevity penalty on the totals, and
the official smoothing constants (1e-15 / 1e-9).

CIDEr-D — n = 1..4, sigma 6: TF-IDF n-gram vectors with document frequencies over each image's reference
set in the evaluated corpus (IDF = log(#images) - log(max(1, df))), per n the clipped cosine
min(hyp, ref) * ref / (|hyp| |ref|) with the Gaussian length penalty exp(-(l_hyp - l_ref)^2 / 2 sigma^2)
(lengths counted as bigrams, as the official code does), averaged over n and references, times 10.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_SPLITS = {"cannot": "can not", "gonna": "gon na", "wanna": "wan na", "gotta": "got ta"}
_CLITIC = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-'.]\w+)*|[^\w\s]+")
_PUNCT = set(".,?!:;-\"'`()[]{}")


def ptb_tokenize(text: str) -> list[str]:
    text = text.lower()
    text = " ".join(_SPLITS.get(w, w) for w in text.split())
    text = _CLITIC.sub(r" \1", text)
    return [t for t in _TOKEN.findall(text) if not set(t) <= _PUNCT]


def _ngrams(words: list[str], n: int = 4) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _check(hyps: dict, refs: dict) -> None:
    if set(hyps) != set(refs) or not hyps:
        raise ValueError("hypotheses and references must cover the same, non-empty set of ids")
    if any(not refs[k] for k in refs):
        raise ValueError("every id needs at least one reference")


def bleu(hyps: dict[object, list[str]], refs: dict[object, list[list[str]]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n; `hyps[id]` a token list, `refs[id]` a list of token lists."""
    _check(hyps, refs)
    tiny, small = 1e-15, 1e-9
    guess, correct = [0] * n, [0] * n
    test_len = ref_len = 0
    for key, hyp in hyps.items():
        max_counts: Counter = Counter()
        for ref in refs[key]:
            max_counts |= _ngrams(ref, n)
        lengths = [len(r) for r in refs[key]]
        ref_len += min(lengths, key=lambda length: (abs(length - len(hyp)), length))
        test_len += len(hyp)
        for gram, count in _ngrams(hyp, n).items():
            correct[len(gram) - 1] += min(count, max_counts[gram])
        for k in range(n):
            guess[k] += max(len(hyp) - k, 0)
    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1 / (k + 1)))
    ratio = (test_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def cider_d(
    hyps: dict[object, list[str]], refs: dict[object, list[list[str]]], n: int = 4, sigma: float = 6.0
) -> tuple[float, dict]:
    """(corpus CIDEr-D, {id: CIDEr-D of that image})."""
    _check(hyps, refs)
    ref_counts = {k: [_ngrams(r, n) for r in refs[k]] for k in hyps}
    df: Counter = Counter()
    for counts in ref_counts.values():
        df.update(set().union(*counts))
    log_images = math.log(len(hyps))

    def vector(counts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(n)]
        for gram, tf in counts.items():
            vec[len(gram) - 1][gram] = tf * (log_images - math.log(max(1.0, df[gram])))
        norms = [math.sqrt(sum(v * v for v in part.values())) for part in vec]
        bigrams = sum(tf for gram, tf in counts.items() if len(gram) == 2)
        return vec, norms, bigrams

    per_image = {}
    for key, hyp in hyps.items():
        vh, nh, lh = vector(_ngrams(hyp, n))
        total = 0.0
        for counts in ref_counts[key]:
            vr, nr, lr = vector(counts)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
            for k in range(n):
                dot = sum(min(v, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, v in vh[k].items())
                if nh[k] and nr[k]:
                    dot /= nh[k] * nr[k]
                total += dot * penalty / n
        per_image[key] = 10.0 * total / len(ref_counts[key])
    return sum(per_image.values()) / len(per_image), per_image


def caption_scores(predictions: dict[object, str], references: dict[object, list[str]]) -> dict:
    """Tokenise raw captions and score them: {'cider_d', 'bleu_1'..'bleu_4', 'n', 'item_cider_d'}."""
    hyps = {k: ptb_tokenize(v) for k, v in predictions.items()}
    refs = {k: [ptb_tokenize(r) for r in v] for k, v in references.items()}
    cider, per_image = cider_d(hyps, refs)
    scores = {"cider_d": cider, **{f"bleu_{i + 1}": b for i, b in enumerate(bleu(hyps, refs))}}
    return {**scores, "n": len(hyps), "item_cider_d": per_image}
