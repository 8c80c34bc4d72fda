"""MME: the release folder (MME_Benchmark_release_version) with one folder per subtask; each image has a
text file of two lines "question<TAB>Yes|No", beside it or, for artwork / celebrity / landmark / posters /
scene, in questions_answers_YN/ with the images in images/. `--data` is the release folder."""

from __future__ import annotations

from pathlib import Path

from lnprobe.errors import InputError
from lnprobe.eval.bench.base import BENCHES, Bench, EvalItem
from lnprobe.eval.scorers import COGNITION, PERCEPTION, mme_answer, mme_scores

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")


def _pairs(task_dir: Path) -> list[tuple[Path, Path]]:
    """(question file, image) pairs of one subtask folder."""
    qa_dir, image_dir = task_dir / "questions_answers_YN", task_dir / "images"
    if not qa_dir.is_dir():
        qa_dir = image_dir = task_dir
    pairs = []
    for txt in sorted(qa_dir.glob("*.txt")):
        image = next(
            (image_dir / (txt.stem + s) for s in IMAGE_SUFFIXES if (image_dir / (txt.stem + s)).is_file()),
            None,
        )
        if image is None:
            raise InputError(f"{txt}: no image {txt.stem}.jpg/.png beside its questions")
        pairs.append((txt, image))
    return pairs


def _questions(txt: Path) -> list[tuple[str, str]]:
    try:
        lines = [ln for ln in txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{txt}: unreadable ({exc})") from None
    out = []
    for no, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) != 2 or parts[1].strip().lower() not in ("yes", "no"):
            raise InputError(f"{txt}: line {no}: expected 'question<TAB>Yes|No' (an MME question file)")
        out.append((parts[0].strip(), parts[1].strip()))
    return out


def read(data: Path) -> list[EvalItem]:
    if not data.is_dir():
        raise InputError(f"{data}: MME needs the release folder (one folder per subtask)")
    tasks = [t for t in (*PERCEPTION, *COGNITION) if (data / t).is_dir()]
    if not tasks:
        raise InputError(f"{data}: not an MME release folder (no subtask folder such as existence/, count/)")
    items = []
    for task in tasks:
        for txt, image in _pairs(data / task):
            rel = image.relative_to(data).as_posix()
            for k, (question, answer) in enumerate(_questions(txt)):
                meta = {"subtask": task, "image": rel}
                items.append(EvalItem(f"{rel}#{k}", rel, question, answer, meta))
    if not items:
        raise InputError(f"{data}: the MME subtask folders hold no question files")
    return items


def score(items: list[EvalItem], predictions: list[str]) -> dict:
    rows = [
        {"subtask": it.meta["subtask"], "image": it.meta["image"], "prediction": p, "answer": it.reference}
        for it, p in zip(items, predictions, strict=True)
    ]
    per_item = [
        {"parsed": mme_answer(p), "correct": mme_answer(p) == it.reference.lower()}
        for it, p in zip(items, predictions, strict=True)
    ]
    s = mme_scores(rows)
    scores = {
        "perception": s["perception"],
        "cognition": s["cognition"],
        "total": s["perception"] + s["cognition"],
    }
    return {"scores": {**scores, "subtasks": s["subtasks"], "unparsed": s["unparsed"]}, "items": per_item}


BENCHES.add(
    "mme",
    Bench(
        name="mme",
        summary="MME: perception and cognition totals (accuracy + accuracy+ per subtask, x100)",
        read=read,
        images=lambda data: data,
        prompt="{question}\nAnswer the question using a single word or phrase.",
        max_new_tokens=16,
        score=score,
        headline=("perception", "cognition", "unparsed"),
    ),
)
