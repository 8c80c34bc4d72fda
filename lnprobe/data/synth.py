"""A synthetic multi-modal task that needs the image: coloured shapes in the quadrants of a picture.

`write_synth(out, config)` writes, deterministically per seed:

    images/NNNNN.png     64 x 64 pictures with 1-3 shapes (circle, square, triangle) in distinct quadrants
    pretrain.json        one caption per training image, asked for with "Describe the picture in detail."
                         (LLaVA format; the `plain` template keeps only the image and the caption)
    instruct.json        instruction data of three kinds (field `kind`): conversation (the colour and
                         shape at a place), reasoning (how many shapes; is there a given shape / colour)
                         and detail (a description);
                         field `qtypes` names each turn's question type
    val.json, eval.json  held-out images, one short-answer question each (fields `answer`, `qtype`); question
                         types cycle, so each type is equally represented. `val` picks learning rates, `eval`
                         is reported
    *_blind.json         the same records without their images (the blind baseline's data)
    text.jsonl           a text-only corpus from the same world ({"text": ...}) to pre-train the text LLM: the
                         picture described in words, then questions about it answered in the chat format
    synth_config.json    the generator's settings and provenance

Answers cannot be guessed from the question: colours, shapes and places are drawn independently per image,
and each question type's answers are balanced (yes/no half each, 1-3 shapes equally often), so the most
common answer per type scores about 1/3 on average (see `majority_baseline` in lnprobe.evaluate).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from lnprobe.config import at_least, ranged, seed_field, validate

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
PLACES = {"top left": (0, 0), "top right": (1, 0), "bottom left": (0, 1), "bottom right": (1, 1)}
NUMBERS = ("zero", "one", "two", "three", "four")
KINDS = ("conversation", "detail", "reasoning")
QTYPES = ("colour", "shape", "count", "has-shape", "has-colour")
KIND_QTYPES = {"conversation": ("colour", "shape"), "reasoning": ("count", "has-shape", "has-colour")}
SIZE = 64
DETAIL = "Describe the picture in detail."


@dataclass(frozen=True)
class SynthConfig:
    n: int = at_least(5, 400)  # pictures in all (training + val + eval)
    seed: int = seed_field(0)
    eval_fraction: float = ranged(0.2, 0, 1, lo_open=True, hi_open=True)
    val_fraction: float = ranged(0.05, 0, 1, hi_open=True)
    text_per_image: int = at_least(1, 3)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class Item:
    shape: str
    colour: str
    place: str

    def phrase(self) -> str:
        return f"a {self.colour} {self.shape} at the {self.place}"


def scene(rng: random.Random) -> list[Item]:
    places = rng.sample(list(PLACES), rng.randint(1, 3))
    return [Item(rng.choice(SHAPES), rng.choice(list(COLOURS)), p) for p in places]


def draw(items: list[Item], rng: random.Random) -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), (245, 245, 245))
    pen = ImageDraw.Draw(img)
    half = SIZE // 2
    for it in items:
        qx, qy = PLACES[it.place]
        r = rng.randint(9, 12)
        cx, cy = qx * half + half // 2 + rng.randint(-2, 2), qy * half + half // 2 + rng.randint(-2, 2)
        box = (cx - r, cy - r, cx + r, cy + r)
        fill = COLOURS[it.colour]
        if it.shape == "circle":
            pen.ellipse(box, fill=fill)
        elif it.shape == "square":
            pen.rectangle(box, fill=fill)
        else:
            pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return img


def caption(items: list[Item]) -> str:
    """Every quadrant in reading order, one sentence each: `a red circle at the top left. nothing at the top
    right. ...`"""
    at = {it.place: it for it in items}
    return " ".join(f"{at[p].phrase()}." if p in at else f"nothing at the {p}." for p in PLACES)


def question(items: list[Item], qtype: str, rng: random.Random) -> tuple[str, str]:
    """A (question, answer) of the given type about this scene. Yes/no answers are balanced."""
    target = rng.choice(items)
    if qtype == "colour":
        return f"What colour is the shape at the {target.place}?", target.colour
    if qtype == "shape":
        return f"What shape is at the {target.place}?", target.shape
    if qtype == "count":
        return "How many shapes are there?", NUMBERS[len(items)]
    if qtype in ("has-shape", "has-colour"):
        values = list(SHAPES) if qtype == "has-shape" else list(COLOURS)
        present = sorted({it.shape if qtype == "has-shape" else it.colour for it in items})
        absent = [v for v in values if v not in present]
        value = rng.choice(absent) if absent and rng.random() < 0.5 else rng.choice(present)
        asked = f"a {value}" if qtype == "has-shape" else f"a {value} shape"
        return f"Is there {asked} in the picture?", "yes" if value in present else "no"
    raise ValueError(f"unknown question type {qtype!r}")


def _scene(rng: random.Random) -> list[Item]:
    """A scene whose items differ in (colour, shape), so every place question has one answer."""
    while True:
        items = scene(rng)
        if len({(it.colour, it.shape) for it in items}) == len(items):
            return sorted(items, key=lambda it: list(PLACES).index(it.place))  # described in reading order


def _conv(turns: list[tuple[str, str]], image: bool = True) -> list[dict]:
    out = []
    for i, (q, a) in enumerate(turns):
        human = f"<image>\n{q}" if image and i == 0 else q
        out += [{"from": "human", "value": human}, {"from": "gpt", "value": a}]
    return out


def _record(rid: str, image: str, turns: list[tuple[str, str]], **extra) -> dict:
    return {"id": rid, "image": image, **extra, "conversations": _conv(turns)}


def blind(record: dict) -> dict:
    """The record without its image (the question alone)."""
    out = {k: v for k, v in record.items() if k != "image"}
    out["conversations"] = [
        {**turn, "value": turn["value"].replace("<image>\n", "")} for turn in record["conversations"]
    ]
    return out


def _instruct(i: int, image: str, items: list[Item], rng: random.Random) -> dict:
    kind = KINDS[i % len(KINDS)]
    if kind == "detail":
        turns, qtypes = [(DETAIL, caption(items))], ["detail"]
    else:
        wanted = list(KIND_QTYPES[kind])
        rng.shuffle(wanted)
        turns, qtypes = [question(items, q, rng) for q in wanted], wanted
    return _record(f"{kind}-{i}", image, turns, kind=kind, qtypes=qtypes)


def write_synth(out: str | Path, config: SynthConfig | None = None, overwrite: bool = False) -> Path:
    """Write the synthetic dataset to OUT (atomically)."""
    from lnprobe.config import save_config
    from lnprobe.io import Output

    config = config or SynthConfig()
    output = Output(Path(out), "data synth", force=overwrite)
    rng = random.Random(config.seed)
    n_eval = max(1, int(round(config.n * config.eval_fraction)))
    n_val = int(round(config.n * config.val_fraction))
    files: dict[str, list] = {"pretrain": [], "instruct": [], "val": [], "eval": []}
    text: list[str] = []
    with output.build() as tmp:
        (tmp / "images").mkdir()
        for i in range(config.n):
            items = _scene(rng)
            image = f"images/{i:05d}.png"
            draw(items, rng).save(tmp / image)
            held = i - (config.n - n_eval - n_val)
            if held >= 0:
                split = "val" if held < n_val else "eval"
                qtype = QTYPES[held % len(QTYPES)]
                q, a = question(items, qtype, rng)
                files[split].append(_record(f"{split}-{i}", image, [(q, a)], answer=a, qtype=qtype))
                continue
            files["pretrain"].append(_record(f"cap-{i}", image, [(DETAIL, caption(items))]))
            files["instruct"].append(_instruct(i, image, items, rng))
            text += _text_lines(items, rng, config.text_per_image)
        for name, rows in files.items():
            _dump(tmp / f"{name}.json", rows)
            if name != "pretrain":
                _dump(tmp / f"{name}_blind.json", [blind(r) for r in rows])
        (tmp / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in text))
        save_config(config, tmp, seed=config.seed)
    return Path(out)


def _dump(path: Path, rows: list) -> None:
    path.write_text(json.dumps(rows, indent=1) + "\n")


def _text_lines(items: list[Item], rng: random.Random, n: int) -> list[str]:
    """Text-only lines about a scene: its description (a language-model line: every word a target), then
    chat lines (only the answer a target, as in instruction tuning): the description in the user turn where
    the image will be, then a question about it, or a request to describe it."""
    described = caption(items)
    lines = [described]
    for qtype in rng.sample([*QTYPES, "detail"], min(n, len(QTYPES) + 1)):
        q, a = (DETAIL, described) if qtype == "detail" else question(items, qtype, rng)
        lines.append(f"USER: {described} {q} ASSISTANT: {a}")
    return lines
