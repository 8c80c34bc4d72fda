"""easy-VQA (PyPI `easy-vqa`, MIT) in LLaVA format: a small real VQA set of 64 x 64 pictures of one shape
of one colour (4,000 train and 1,000 test images; 13 answers: yes/no, 3 shapes, 8 colours).

`write_easy_vqa(out, config)` writes, deterministically per seed:

    train.json, val.json  one record per question of the chosen train images; validation is a seeded share
                          of the train IMAGES (`val_fraction`), so no validation image is seen in training
    eval.json             one record per question of the chosen test images
                          (every record: `id`, `image`, `conversations`, `qtype`, `qtypes` [qtype],
                          `answer`, `image_id`)
    captions.json         connector pre-training captions ("Describe the picture in detail." -> "A blue
                          rectangle."), one per TRAIN image whose colour and shape its own questions
                          determine (`CAPTION_RULE`); never for validation or eval images
    images/train/, images/test/   copies of the images used, so OUT never points into site-packages
    easy_vqa.json         the package version, config, counts per split / qtype / answer, the rules and
                          provenance

Question types follow from the question text alone (`QTYPE_RULE`, `parse_question`): every question of the
package matches one of its 24 templates; an unknown question raises rather than being classed.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lnprobe.config import ranged, seed_field, to_dict, validate
from lnprobe.errors import InputError

SHAPES = ("circle", "rectangle", "triangle")
COLOURS = ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow")
YES_NO = ("yes", "no")
QTYPES = ("yes/no", "shape", "color")
KIND_VALUES = {"shape": SHAPES, "color": COLOURS}
DETAIL = "Describe the picture in detail."
COMMAND = "data easy-vqa"
MISSING = "easy-vqa is not installed: pip install 'lnprobe[datasets]'"

QTYPE_RULE = (
    "color: 'what color is the <shape|shape>?', 'what is the color of the <shape|shape>?'; "
    "shape: 'what shape is in the image / is present / does the image contain?', 'what is the <colour> "
    "shape?'; yes/no: 'does the image (not) contain a X?', 'is a X present?', 'is no X present?', "
    "'is there (not) a X (in the image)?' with X a shape or '<colour> shape' (negated by 'not' / 'no'); "
    "any other question raises"
)
CAPTION_RULE = (
    "'A <colour> <shape>.' from the image's own question-answer pairs: a value is known when a pair "
    "asserts it (an open question's answer; the shape or colour an open question names; a yes/no answer "
    "saying it is present) or when the pairs rule out every other value (3 shapes, 8 colours); images "
    "with colour or shape unknown get no caption; contradictory pairs raise"
)


@dataclass(frozen=True)
class EasyVqaConfig:
    train_images: int | None = ranged(None, 1, help="Train images to use, drawn by seed (default all 4,000).")
    eval_images: int | None = ranged(None, 1, help="Test images to use, drawn by seed (default all 1,000).")
    val_fraction: float = ranged(
        0.05,
        0,
        1,
        lo_open=True,
        hi_open=True,
        help="Share of the chosen train images held out for validation.",
    )
    seed: int = seed_field(0, "Seed of the image draws (the data is deterministic per seed).")

    def __post_init__(self) -> None:
        validate(self)
        if self.train_images is not None:
            split_sizes(self.train_images, self.val_fraction)


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """(training, validation) images of `n`; both must be at least one."""
    n_val = round(n * val_fraction)
    if n_val < 1 or n_val >= n:
        which = "validation" if n_val < 1 else "training"
        raise InputError(
            f"--val-fraction {val_fraction:g} of {n} train images leaves no {which} image "
            f"({n_val} validation); change --val-fraction or --train-images"
        )
    return n - n_val, n_val


# -- question templates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """What a question asks: its type, the shape or colour it names (kind, value), and for yes/no
    questions whether it is negated ("is there not a ...", "is no ... present")."""

    qtype: str
    named: tuple[str, str] | None = None
    negated: bool = False


_X = r"(?P<x>\w+)(?P<shape_word> shape)?"
_YES_NO = tuple(
    re.compile(frame.format(x=_X) + r"\?")
    for frame in (
        "does the image contain a {x}",
        "does the image not contain a {x}",
        "is a {x} present",
        "is no {x} present",
        "is there a {x}",
        "is there a {x} in the image",
        "is there not a {x}",
        "is there not a {x} in the image",
    )
)
_OPEN = (  # (pattern, qtype, kind of the value the question may name in `x`)
    (re.compile(r"what color is the (?P<x>\w+)\?"), "color", "shape"),
    (re.compile(r"what is the color of the (?P<x>\w+)\?"), "color", "shape"),
    (re.compile(r"what shape (?:is in the image|is present|does the image contain)\?"), "shape", None),
    (re.compile(r"what is the (?P<x>\w+) shape\?"), "shape", "color"),
)


def parse_question(text: str) -> Question:
    """The question's type and what it names (`QTYPE_RULE`); InputError for any other question."""
    for pattern in _YES_NO:
        if m := pattern.fullmatch(text):
            kind = "color" if m["shape_word"] else "shape"
            negated = " not " in text or text.startswith("is no ")
            return Question("yes/no", _named(text, kind, m["x"]), negated)
    for pattern, qtype, kind in _OPEN:
        if m := pattern.fullmatch(text):
            x = m.groupdict().get("x")
            return Question(qtype, None if x in (None, "shape") else _named(text, kind, x))
    raise InputError(f"easy-vqa: unrecognised question {text!r} (no known template)")


def _named(text: str, kind: str, value: str) -> tuple[str, str]:
    if value not in KIND_VALUES[kind]:
        raise InputError(f"easy-vqa: question {text!r} names {value!r}, not a known {kind}")
    return kind, value


def check_answer(question: str, answer: str, parsed: Question) -> None:
    """The answer is one its question type allows."""
    allowed = YES_NO if parsed.qtype == "yes/no" else KIND_VALUES[parsed.qtype]
    if answer not in allowed:
        raise InputError(f"easy-vqa: answer {answer!r} to {question!r} is not a {parsed.qtype} answer")


# -- captions ------------------------------------------------------------------------------------------


def facts(pairs: list[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """(kind, value, present) that an image's question-answer pairs assert."""
    out = []
    for text, answer in pairs:
        q = parse_question(text)
        if q.qtype == "yes/no":
            out.append((*q.named, (answer == "yes") != q.negated))
            continue
        out.append((q.qtype, answer, True))
        if q.named:
            out.append((*q.named, True))
    return out


def known(kind: str, asserted: list[tuple[str, str, bool]], where: str) -> str | None:
    """The image's `kind` value that the facts determine, else None; InputError if they contradict."""
    present = {v for k, v, p in asserted if k == kind and p}
    absent = {v for k, v, p in asserted if k == kind and not p}
    if len(present) > 1 or present & absent:
        raise InputError(f"easy-vqa: {where}: its questions contradict each other about the {kind}")
    left = set(KIND_VALUES[kind]) - absent
    return next(iter(present or (left if len(left) == 1 else ())), None)


def caption(pairs: list[tuple[str, str]], where: str = "image") -> str | None:
    """'A <colour> <shape>.' when the pairs determine both, else None (`CAPTION_RULE`)."""
    asserted = facts(pairs)
    colour, shape = known("color", asserted, where), known("shape", asserted, where)
    return f"A {colour} {shape}." if colour and shape else None


# -- the package -----------------------------------------------------------------------------------------


def _package():
    try:
        import easy_vqa
    except ImportError:
        raise InputError(MISSING) from None
    answers = set(easy_vqa.get_answers())
    if answers != {*YES_NO, *SHAPES, *COLOURS}:
        raise InputError(f"easy-vqa: unexpected answer set {sorted(answers)}")
    return easy_vqa


def load_split(evqa, split: str) -> tuple[dict[int, list[tuple[str, str]]], dict[int, str]]:
    """({image id: [(question, answer)] in package order}, {image id: png path}) of 'train' or 'test'."""
    texts, answers, ids = getattr(evqa, f"get_{split}_questions")()
    paths = getattr(evqa, f"get_{split}_image_paths")()
    pairs: dict[int, list[tuple[str, str]]] = {i: [] for i in sorted(paths)}
    for text, answer, image in zip(texts, answers, ids, strict=True):
        check_answer(text, answer, parse_question(text))
        if image not in pairs:
            raise InputError(
                f"easy-vqa: {split} question {text!r} refers to image {image}, not in the package"
            )
        pairs[image].append((text, answer))
    return pairs, paths


def _draw(ids: list[int], n: int | None, split: str, seed: int, flag: str) -> list[int]:
    """`n` of `ids` drawn by seed (all when None), sorted."""
    if n is None:
        return sorted(ids)
    if n > len(ids):
        raise InputError(f"{flag} {n}: the package has {len(ids)} {split} images")
    return sorted(random.Random(f"easy-vqa:{split}:{seed}").sample(sorted(ids), n))


def plan(evqa, config: EasyVqaConfig) -> tuple[dict[str, list[int]], dict[str, tuple[dict, dict]]]:
    """The image ids of each output split, and the loaded package splits."""
    source = {split: load_split(evqa, split) for split in ("train", "test")}
    chosen = _draw(list(source["train"][1]), config.train_images, "train", config.seed, "--train-images")
    _, n_val = split_sizes(len(chosen), config.val_fraction)
    shuffled = random.Random(f"easy-vqa:val:{config.seed}").sample(chosen, len(chosen))
    val = sorted(shuffled[:n_val])
    splits = {
        "train": sorted(set(chosen) - set(val)),
        "val": val,
        "eval": _draw(list(source["test"][1]), config.eval_images, "test", config.seed, "--eval-images"),
    }
    return splits, source


# -- records and files ---------------------------------------------------------------------------------


def _image_path(split: str, image: int) -> str:
    return f"images/{'test' if split == 'eval' else 'train'}/{image}.png"


def _conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


def question_records(split: str, images: list[int], pairs: dict[int, list]) -> list[dict[str, Any]]:
    """One LLaVA record per question of each image."""
    rows = []
    for image in images:
        for k, (text, answer) in enumerate(pairs[image]):
            qtype = parse_question(text).qtype
            rows.append(
                {
                    "id": f"{split}-{image}-{k}",
                    "image": _image_path(split, image),
                    "conversations": _conversation(text, answer),
                    "qtype": qtype,
                    "qtypes": [qtype],
                    "answer": answer,
                    "image_id": image,
                }
            )
    return rows


def caption_records(images: list[int], pairs: dict[int, list]) -> list[dict[str, Any]]:
    """One caption record per image whose questions determine its colour and shape."""
    rows = []
    for image in images:
        text = caption(pairs[image], f"train image {image}")
        if text:
            rows.append(
                {
                    "id": f"caption-{image}",
                    "image": _image_path("train", image),
                    "conversations": _conversation(DETAIL, text),
                    "image_id": image,
                }
            )
    return rows


def _dump(path: Path, rows: list) -> None:
    """A JSON array, one record per line (as `lnprobe data synth` writes)."""
    path.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n")


def _copy_images(tmp: Path, splits: dict[str, list[int]], source: dict) -> None:
    for split, images in splits.items():
        paths = source["test" if split == "eval" else "train"][1]
        for image in images:
            target = tmp / _image_path(split, image)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[image], target)


def _summary(config: EasyVqaConfig, splits: dict, files: dict[str, list], n_captions: int) -> dict:
    from importlib import metadata

    from lnprobe.provenance import provenance

    questions = {s: files[s] for s in ("train", "val", "eval")}
    return {
        "source": {
            "package": "easy-vqa",
            "version": metadata.version("easy-vqa"),
            "license": "MIT (github.com/vzhou842/easy-VQA)",
        },
        "config": to_dict(config),
        "images": {s: len(ids) for s, ids in splits.items()},
        "records": {s: len(rows) for s, rows in questions.items()},
        "qtypes": {
            s: dict(sorted(Counter(r["qtype"] for r in rows).items())) for s, rows in questions.items()
        },
        "answers": {
            s: dict(Counter(r["answer"] for r in rows).most_common()) for s, rows in questions.items()
        },
        "captions": {"images": n_captions, "of_train_images": len(splits["train"])},
        "rules": {"qtype": QTYPE_RULE, "captions": CAPTION_RULE},
        "provenance": provenance(seed=config.seed),
    }


def write_easy_vqa(
    out: str | Path, config: EasyVqaConfig | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Write easy-VQA to OUT atomically (see the module's docstring); returns the summary written to
    OUT/easy_vqa.json. Everything is checked before anything is written."""
    from lnprobe.io import Output

    config = config or EasyVqaConfig()
    evqa = _package()
    output = Output(Path(out), COMMAND, force=overwrite, flag="OUT")
    output.check()
    splits, source = plan(evqa, config)
    files = {
        s: question_records(s, ids, source["test" if s == "eval" else "train"][0])
        for s, ids in splits.items()
    }
    files["captions"] = caption_records(splits["train"], source["train"][0])
    summary = _summary(config, splits, files, len(files["captions"]))
    with output.build() as tmp:
        for name, rows in files.items():
            _dump(tmp / f"{name}.json", rows)
        _copy_images(tmp, splits, source)
        (tmp / "easy_vqa.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
