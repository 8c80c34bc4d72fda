"""The study's data stage on a user's LLaVA-format data (`--data`, `--eval-data`, ...), not the synthetic
shapes: every input checked, then OUT/data written in the shape the later stages read.

    instruct.json   the training questions (`--data` less the validation split)
    val.json        `--val-data`, else a seeded share (`val_fraction`) of `--data`'s images (split by image,
                    so no validation image is trained on; records without an image are split alone)
    eval.json       `--eval-data`: the held-out questions (the first turn of each record is scored)
    *_blind.json    the same three without their images (`<image>` and `image` removed): the blind baseline
    pretrain.json   `--pretrain-data` captions for the connector stage, else the training questions

Each written record carries its image as an absolute path (the inputs are never copied or changed), its
question kind per turn (`qtypes`; eval and val records also `qtype` and `answer`). A kind is the record's own
`qtype` (or `qtypes`) field where present, else the first two words of the question, lowercased, without
punctuation and `<image>` (`question_kind`): "what color is the shape?" -> "what color", "is there a
circle?" -> "is there". The majority baseline answers each kind with its most common training answer.

Bad input stops here, before anything is trained, with one line naming the file and record: a record
without an answer, an image missing or undecodable, an empty split, or fewer records than the split needs.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from lnprobe.data.llava import IMAGE, raw_records, read_records
from lnprobe.errors import InputError

MIN_HELD_OUT = 10  # questions at least in the validation and the evaluation set
_WORD = re.compile(r"[a-z0-9']+")


def question_kind(question: str, words: int = 2) -> str:
    """A question's kind from its first `words` words (lowercased, punctuation and `<image>` dropped)."""
    found = _WORD.findall(question.replace(IMAGE, " ").lower())
    return " ".join(found[:words]) or "(empty)"


def prepare_user_data(cfg, out: Path) -> Path:
    """Check the user's files named in `cfg` (a MiniatureConfig with `data` set) and write OUT (see the
    module docstring); returns OUT. Written whole or not at all."""
    from lnprobe.io import Output

    train = _records(Path(cfg.data), cfg.image_folder, "--data")
    evaluation = _records(Path(cfg.eval_data), cfg.image_folder, "--eval-data")
    if cfg.val_data:
        val = _records(Path(cfg.val_data), cfg.image_folder, "--val-data")
    else:
        train, val = split_by_image(train, cfg.val_fraction, cfg.seed, cfg.data)
    _check_sizes(cfg, train, val, evaluation)
    captions = (
        _records(Path(cfg.pretrain_data), cfg.image_folder, "--pretrain-data") if cfg.pretrain_data else train
    )
    files = {"instruct": train, "val": val, "eval": evaluation, "pretrain": captions}
    with Output(out, "study data", force=True).build() as tmp:
        for name, rows in files.items():
            _write(tmp / f"{name}.json", rows)
            if name != "pretrain":
                _write(tmp / f"{name}_blind.json", [blind(r) for r in rows])
        _write(tmp / "sources.json", _sources(cfg, files))
    return out


def _records(path: Path, image_folder: str | None, flag: str) -> list[dict]:
    """The file's records, validated (`read_records`), each with an answer to every question, its image
    resolved to an absolute path that exists and decodes, and its kinds."""
    from lnprobe.data.images import check_images

    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file")
    parsed = read_records(path)
    root = Path(image_folder) if image_folder else path.parent
    rows, images = [], []
    for rec, raw in zip(parsed, raw_records(path), strict=True):
        where = f"{path}: record {rec.index} (id {rec.id})"
        if any(not answer.strip() for _, answer in rec.turns):
            raise InputError(f"{where}: a question without an answer")
        row = {k: v for k, v in raw.items() if k not in ("qtype", "qtypes", "answer")}
        row["qtypes"] = _kinds(raw, rec)
        row["qtype"], row["answer"] = row["qtypes"][0], rec.turns[0][1].strip()
        if rec.image:
            image = (root / rec.image).resolve()
            if not image.is_file():
                raise InputError(f"{image}: image missing ({where})")
            row["image"] = str(image)
            images.append((image, where))
        rows.append(row)
    check_images(images)
    return rows


def _kinds(raw: dict, rec) -> list[str]:
    """One question kind per turn: the record's `qtypes` / `qtype` field, else `question_kind`."""
    given = raw.get("qtypes")
    if isinstance(given, list) and len(given) == len(rec.turns) and all(isinstance(q, str) for q in given):
        return list(given)
    if isinstance(raw.get("qtype"), str) and len(rec.turns) == 1:
        return [raw["qtype"]]
    return [question_kind(human) for human, _ in rec.turns]


def split_by_image(
    rows: list[dict], fraction: float, seed: int, source: str
) -> tuple[list[dict], list[dict]]:
    """(train, val): a seeded `fraction` of the distinct images (at least one) and their records held out;
    records without an image are drawn alone."""
    groups: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.get("image") or f"#{i}", []).append(row)
    keys = sorted(groups)
    if len(keys) < 2:
        raise InputError(f"--data {source}: {len(keys)} image(s): too few to hold out validation questions")
    held = set(random.Random(seed).sample(keys, max(1, round(fraction * len(keys)))))
    train = [r for k in keys if k not in held for r in groups[k]]
    val = [r for k in keys if k in held for r in groups[k]]
    return train, val


def _check_sizes(cfg, train: list, val: list, evaluation: list) -> None:
    need = {"training": (train, cfg.batch_size, "--data"), "validation": (val, MIN_HELD_OUT, "--val-data"),
            "evaluation": (evaluation, MIN_HELD_OUT, "--eval-data")}  # fmt: skip
    for what, (rows, least, flag) in need.items():
        if len(rows) < least:
            hint = " (or a larger --val-fraction)" if what == "validation" and not cfg.val_data else ""
            raise InputError(
                f"{flag}: {len(rows)} {what} record(s) after the split, fewer than the {least} the study "
                f"needs{hint}"
            )


def blind(row: dict) -> dict:
    """The record without its image: `image` dropped, `<image>` (and the line break after it) removed."""
    out = {k: v for k, v in row.items() if k != "image"}
    out["conversations"] = [
        {**turn, "value": turn["value"].replace(IMAGE + "\n", "").replace(IMAGE, "").strip()}
        for turn in row["conversations"]
    ]
    return out


def _write(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")


def _sources(cfg, files: dict[str, list]) -> dict:
    """What the data stage read and wrote: the input files, the record counts and the kinds' counts."""
    from collections import Counter

    return {
        "inputs": {
            k: getattr(cfg, k) for k in ("data", "val_data", "eval_data", "pretrain_data", "image_folder")
        },
        "records": {name: len(rows) for name, rows in files.items()},
        "kinds": {
            name: dict(Counter(q for r in files[name] for q in r["qtypes"])) for name in ("instruct", "eval")
        },
        "kind_rule": "the record's qtype / qtypes field, else the question's first two words",
    }
