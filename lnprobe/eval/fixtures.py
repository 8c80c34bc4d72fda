"""Tiny benchmark folders in each official file format, with images drawn locally (coloured shapes), so
`lnprobe eval` can be tried and tested without downloading anything. The questions are about the drawn
shapes and their answers are true for the image, but a handful of items scores nothing meaningful."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from lnprobe.errors import InputError

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square")


def _image(path: Path, rng: random.Random) -> tuple[str, str]:
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    img = Image.new("RGB", (64, 64), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    box = (12, 12, 52, 52)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return colour, shape


def _other(rng: random.Random, colour: str) -> str:
    return rng.choice([c for c in COLOURS if c != colour])


def write_pope(out: Path, n: int, rng: random.Random) -> None:
    for split in ("random", "popular", "adversarial"):
        lines = []
        for i in range(n):
            name = f"COCO_val2014_{rng.randrange(10**6):012d}.jpg"
            colour, shape = _image(out / "val2014" / name, rng)
            asked, label = (shape, "yes") if i % 2 == 0 else ([s for s in SHAPES if s != shape][0], "no")
            rec = {
                "question_id": i + 1,
                "image": name,
                "text": f"Is there a {asked} in the image?",
                "label": label,
            }
            lines.append(json.dumps(rec))
        (out / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")


def write_mme(out: Path, n: int, rng: random.Random) -> None:
    for task, nested in (
        ("color", False),
        ("existence", False),
        ("scene", True),
        ("commonsense_reasoning", False),
    ):
        for i in range(n):
            stem = f"{i:06d}"
            image_dir = out / task / "images" if nested else out / task
            qa_dir = out / task / "questions_answers_YN" if nested else out / task
            colour, _ = _image(image_dir / f"{stem}.png", rng)
            qa_dir.mkdir(parents=True, exist_ok=True)
            lines = [
                f"Is the shape {colour}? Please answer yes or no.\tYes",
                f"Is the shape {_other(rng, colour)}? Please answer yes or no.\tNo",
            ]
            (qa_dir / f"{stem}.txt").write_text("\n".join(lines) + "\n")


def write_vqav2(out: Path, n: int, rng: random.Random) -> None:
    questions, annotations = [], []
    for i in range(n):
        image_id = rng.randrange(1, 10**6)
        colour, shape = _image(out / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", rng)
        qid = image_id * 10
        if i % 2:
            q, a, kind = "What colour is the shape?", [colour] * 8 + [_other(rng, colour)] * 2, "other"
        else:
            q, a, kind = "How many shapes are there?", ["1"] * 6 + ["one"] * 3 + ["2"], "number"
        questions.append({"image_id": image_id, "question": q, "question_id": qid})
        answers = [{"answer": x, "answer_confidence": "yes", "answer_id": j + 1} for j, x in enumerate(a)]
        annotations.append(
            {
                "question_id": qid, "image_id": image_id, "question_type": q.split(" ")[0].lower(),
                "answer_type": kind, "multiple_choice_answer": a[0], "answers": answers,
            }
        )  # fmt: skip
    head = {"info": {}, "license": {}, "data_subtype": "val2014", "data_type": "mscoco"}
    (out / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({**head, "task_type": "Open-Ended", "questions": questions})
    )
    (out / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({**head, "annotations": annotations}))


def write_karpathy(out: Path, n: int, rng: random.Random, dataset: str) -> None:
    images = []
    for i in range(n + 2):
        split = "test" if i < n else "train"
        if dataset == "coco":
            name, filepath = f"COCO_val2014_{rng.randrange(10**6):012d}.jpg", "val2014"
            colour, shape = _image(out / filepath / name, rng)
        else:
            name, filepath = f"{rng.randrange(10**9)}.jpg", None
            colour, shape = _image(out / "flickr30k-images" / name, rng)
        raws = [
            f"A {colour} {shape} on a white background.",
            f"a {shape} that is {colour}",
            f"A single {colour} {shape}.",
            f"There's a {colour} {shape} in the middle.",
            f"The {shape} is {colour}.",
        ]
        sentences = [
            {"raw": r, "tokens": r.lower().strip(".").split(), "imgid": i, "sentid": 5 * i + k}
            for k, r in enumerate(raws)
        ]
        rec = {
            "filename": name,
            "imgid": i,
            "split": split,
            "sentences": sentences,
            "sentids": [5 * i + k for k in range(5)],
        }
        if dataset == "coco":
            rec |= {"filepath": filepath, "cocoid": rng.randrange(10**6)}
        images.append(rec)
    (out / f"dataset_{dataset}.json").write_text(json.dumps({"images": images, "dataset": dataset}))


WRITERS = {
    "pope": write_pope,
    "mme": write_mme,
    "vqav2": write_vqav2,
    "coco": lambda out, n, rng: write_karpathy(out, n, rng, "coco"),
    "flickr30k": lambda out, n, rng: write_karpathy(out, n, rng, "flickr30k"),
}


def write_fixture(bench: str, out: str | Path, n: int = 4, seed: int = 0, force: bool = False) -> Path:
    from lnprobe.io import Output

    if bench not in WRITERS:
        raise InputError(f"unknown benchmark {bench!r} (known: {', '.join(WRITERS)})")
    if n < 1:
        raise InputError(f"--n must be >= 1, got {n}")
    with Output(Path(out), "data fixture", force=force).build() as tmp:
        WRITERS[bench](tmp, n, random.Random(seed))
    return Path(out)
