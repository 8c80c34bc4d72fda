"""VQA accuracy as the official VQA evaluation (GT-Vision-Lab/VQA, vqaEval.py, Python 3 version) computes it.

The prediction is normalised: newlines/tabs to spaces, stripped, punctuation handled (each mark in PUNCT is
deleted when it touches a space or the text holds a digit-comma-digit, else replaced by a space; then
every "." not followed by a digit is deleted, at most 32 of them, as the official call passes re.UNICODE
as the count), lower-cased, number words zero..ten (and "none") to digits, articles a/an/the dropped,
apostrophe-less contractions restored from the official table. The ten human answers are only
punctuation-normalised, and only when they disagree. The accuracy of a question is, over the ten
leave-one-out subsets of nine answers, min(#answers equal to the prediction / 3, 1), averaged.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache

PUNCT = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: a look-ahead, as in the official code

# The official contractions table, "as typed → restored", one pair per line (its quirks kept: e.g.
# "somebody'd" maps to "somebodyd", and "let's"/"she's" map to themselves).
_CONTRACTION_PAIRS = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've
couldnt've couldn't've|didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've
hadn'tve hadn't've|hasnt hasn't|havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's
howd how'd|howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd
itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am|mightnt mightn't|mightnt've mightn't've
mightn'tve mightn't've|mightve might've|mustnt mustn't|mustve must've|neednt needn't|notve not've
oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at|'ow'sat 'ow's'at|shant shan't
shed've she'd've|she'dve she'd've|she's she's|shouldve should've|shouldnt shouldn't
shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd|somebodyd've somebody'd've
somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's|someoned someone'd
someoned've someone'd've|someone'dve someone'd've|someonell someone'll|someones someone's
somethingd something'd|somethingd've something'd've|something'dve something'd've
somethingll something'll|thats that's|thered there'd|thered've there'd've|there'dve there'd've
therere there're|theres there's|theyd they'd|theyd've they'd've|they'dve they'd've|theyll they'll
theyre they're|theyve they've|twas 'twas|wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've
werent weren't|whatll what'll|whatre what're|whats what's|whatve what've|whens when's|whered where'd
wheres where's|whereve where've|whod who'd|whod've who'd've|who'dve who'd've|wholl who'll|whos who's
whove who've|whyll why'll|whyre why're|whys why's|wont won't|wouldve would've|wouldnt wouldn't
wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|y'allll y'all'll
yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd|youd've you'd've
you'dve you'd've|youll you'll|youre you're|youve you've
"""
CONTRACTIONS = dict(
    pair.split(" ") for line in _CONTRACTION_PAIRS.strip().splitlines() for pair in line.split("|")
)


@lru_cache(maxsize=1 << 16)  # answers repeat a lot across a benchmark
def process_punctuation(text: str) -> str:
    out = text
    has_number_comma = _COMMA_IN_NUMBER.search(text) is not None
    for p in PUNCT:
        if p + " " in text or " " + p in text or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=32)


def process_digit_article(text: str) -> str:
    words = [NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


@lru_cache(maxsize=1 << 16)
def normalize_answer(text: str) -> str:
    """The prediction's normalisation."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Accuracy of one prediction against the human answers (ten in VQAv2)."""
    if len(answers) < 2:
        raise ValueError("VQA accuracy needs at least two human answers")
    pred = normalize_answer(prediction)
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    matches = [g == pred for g in gts]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(gts)


def vqa_scores(items: list[dict]) -> dict:
    """`items`: {prediction, answers, answer_type?}; accuracy in percent, overall and per answer type."""
    if not items:
        raise ValueError("no items to score")
    accs = [vqa_accuracy(it["prediction"], it["answers"]) for it in items]
    by_type: dict[str, list[float]] = defaultdict(list)
    for it, acc in zip(items, accs, strict=True):
        by_type[it.get("answer_type") or "all"].append(acc)
    return {
        "accuracy": 100 * sum(accs) / len(accs),
        "per_answer_type": {k: 100 * sum(v) / len(v) for k, v in sorted(by_type.items())},
        "n": len(items),
        "item_accuracy": accs,
    }
