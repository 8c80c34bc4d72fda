"""A synthetic multi-modal task that needs the image: coloured shapes in the quadrants of a picture.

`write_synth(out, config)` writes, deterministically per seed:

    images/NNNNN.png     64 x 64 pictures with 1 to `max_shapes` (3) shapes (circle, square, triangle) in
                         distinct quadrants
    pretrain.json        one caption per training image, asked for with "Describe the picture in detail."
                         (LLaVA format; the `plain` template keeps only the image and the caption)
    instruct.json        multi-turn instruction data of three kinds (field `kind`): conversation (the
                         colour and the shape at every place that holds one), reasoning (how many shapes;
                         is there a given shape / colour) and detail (a description); field `qtypes` names
                         each turn's question type. Only the question types in `qtypes` are asked
    val.json, eval.json  held-out images, one short-answer question each (fields `answer`, `qtype`); question
                         types cycle, so each type is equally represented. `val` picks learning rates, `eval`
                         is reported
    *_blind.json         the same records without their images (the blind baseline's data)
    (every record)       field `scene`: the picture's shapes as [{shape, colour, place}] (for probes)
    text.jsonl           a text-only corpus from the same world ({"text": ...}) to pre-train the text LLM: per
                         training picture (and per `text_scenes` extra scene drawn in words only) chat lines
                         (`USER: ... ASSISTANT: ...</s>USER: ...`) with its description where the image
                         will be: every question about it, and for one scene in four a request to
                         describe it
    lnprobe_config.json  the generator's settings and provenance

Answers cannot be guessed from the question: colours, shapes and places are drawn independently per image,
and each question type's answers are balanced (yes/no half each, 1-3 shapes equally often), so the most
common answer per type scores about 1/3 on average (see `majority_baseline` in lnprobe.eval.accuracy).

Question types (`qtypes`): the colour / the shape at a place, how many shapes, is there a given shape /
colour; and, for pictures of one shape (`max_shapes` 1, the miniature's task), its colour, its shape and its
place (`the-colour`, `the-shape`, `the-place`: "Where is the shape?" "top left"). The first kind needs a
lookup (the question's place -> the matching part of the picture) that a 4-layer LLM learns only after
thousands of steps; the second reads the one occupied part of the picture.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lnprobe.config import at_least, option, ranged, seed_field, validate

if TYPE_CHECKING:
    from PIL import Image

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
PLACES = {"top left": (0, 0), "top right": (1, 0), "bottom left": (0, 1), "bottom right": (1, 1)}
NUMBERS = ("zero", "one", "two", "three", "four")
KINDS = ("conversation", "detail", "reasoning")
QTYPES = ("colour", "shape", "count", "has-shape", "has-colour", "the-colour", "the-shape", "the-place")
SINGLE = ("the-colour", "the-shape", "the-place")  # about the only shape of a picture (max_shapes 1)
DEFAULT_QTYPES = QTYPES[:5]
KIND_QTYPES = {
    "conversation": ("colour", "shape", *SINGLE),
    "reasoning": ("count", "has-shape", "has-colour"),
}
SIZE = 64
DETAIL = "Describe the picture in detail."


@dataclass(frozen=True)
class SynthConfig:
    n: int = at_least(5, 400, "Number of pictures (training + validation + evaluation).")
    seed: int = seed_field(0, "Seed (the data is deterministic per seed).")
    eval_fraction: float = ranged(
        0.2, 0, 1, lo_open=True, hi_open=True, help="Share of the pictures held out for evaluation."
    )
    val_fraction: float = ranged(0.05, 0, 1, hi_open=True, help="Share held out for validation.")
    text_scenes: int = at_least(0, 0, "Extra scenes described in text.jsonl only (no picture).")
    # the question types asked (instruct, val, eval, text)
    qtypes: tuple[str, ...] = option(DEFAULT_QTYPES, "Question types asked, comma-separated.", sep=",")
    max_shapes: int = ranged(3, 1, 3, help="Shapes per picture: 1 to this many (<= 3).")

    def __post_init__(self) -> None:
        from lnprobe.errors import InputError

        validate(self)
        unknown = [q for q in self.qtypes if q not in QTYPES]
        if not self.qtypes or unknown or len(set(self.qtypes)) != len(self.qtypes):
            raise InputError(f"--qtypes must be distinct names among {', '.join(QTYPES)}, got {self.qtypes}")
        if self.max_shapes > 1 and set(self.qtypes) & set(SINGLE):
            raise InputError(
                f"--qtypes {', '.join(SINGLE)} ask about a picture's only shape: need --max-shapes 1"
            )


@dataclass(frozen=True)
class Item:
    shape: str
    colour: str
    place: str

    def phrase(self) -> str:
        return f"a {self.colour} {self.shape} at the {self.place}"


def scene(rng: random.Random, max_shapes: int = 3) -> list[Item]:
    places = rng.sample(list(PLACES), rng.randint(1, max_shapes))
    return [Item(rng.choice(SHAPES), rng.choice(list(COLOURS)), p) for p in places]


def draw(items: list[Item], rng: random.Random) -> Image.Image:
    from PIL import Image, ImageDraw

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
    if qtype in SINGLE:
        if len(items) != 1:
            raise ValueError(f"question type {qtype!r} needs a picture with one shape, got {len(items)}")
        return {
            "the-colour": ("What colour is the shape?", target.colour),
            "the-shape": ("What shape is in the picture?", target.shape),
            "the-place": ("Where is the shape?", target.place),
        }[qtype]
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


def _scene(rng: random.Random, max_shapes: int = 3) -> list[Item]:
    """A scene whose items differ in (colour, shape), so every place question has one answer."""
    while True:
        items = scene(rng, max_shapes)
        if len({(it.colour, it.shape) for it in items}) == len(items):
            return sorted(items, key=lambda it: list(PLACES).index(it.place))  # described in reading order


def _conv(turns: list[tuple[str, str]], image: bool = True) -> list[dict]:
    out = []
    for i, (q, a) in enumerate(turns):
        human = f"<image>\n{q}" if image and i == 0 else q
        out += [{"from": "human", "value": human}, {"from": "gpt", "value": a}]
    return out


def _record(rid: str, image: str, turns: list[tuple[str, str]], items: list[Item], **extra) -> dict:
    """A LLaVA record; `scene` lists the picture's shapes ({shape, colour, place}, reading order), which
    readers of the conversations ignore (`lnprobe linprobe` probes them)."""
    scene = [{"shape": it.shape, "colour": it.colour, "place": it.place} for it in items]
    return {"id": rid, "image": image, **extra, "scene": scene, "conversations": _conv(turns)}


def blind(record: dict) -> dict:
    """The record without its image (the question alone)."""
    out = {k: v for k, v in record.items() if k != "image"}
    out["conversations"] = [
        {**turn, "value": turn["value"].replace("<image>\n", "")} for turn in record["conversations"]
    ]
    return out


def _questions(items: list[Item], qtypes: tuple[str, ...], rng: random.Random) -> list[tuple[str, str, str]]:
    """(qtype, question, answer) for every question of these types about the scene, shuffled: the colour
    and the shape at every place that holds one, and one of each other type."""
    out = []
    for qtype in qtypes:
        targets = [[it] for it in items] if qtype in ("colour", "shape") else [items]
        out += [(qtype, *question(t, qtype, rng)) for t in targets]
    rng.shuffle(out)
    return out


def _instruct(i: int, image: str, items: list[Item], rng: random.Random, qtypes: tuple[str, ...]) -> dict:
    kinds = [k for k in KINDS if k == "detail" or set(KIND_QTYPES[k]) & set(qtypes)]
    kind = kinds[i % len(kinds)]
    if kind == "detail":
        turns, asked = [(DETAIL, caption(items))], ["detail"]
    else:
        qs = _questions(items, tuple(q for q in qtypes if q in KIND_QTYPES[kind]), rng)
        turns, asked = [(q, a) for _, q, a in qs], [t for t, _, _ in qs]
    return _record(f"{kind}-{i}", image, turns, items, kind=kind, qtypes=asked)


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
            items = _scene(rng, config.max_shapes)
            image = f"images/{i:05d}.png"
            draw(items, rng).save(tmp / image)
            held = i - (config.n - n_eval - n_val)
            if held >= 0:
                split = "val" if held < n_val else "eval"
                qtype = config.qtypes[held % len(config.qtypes)]
                q, a = question(items, qtype, rng)
                files[split].append(_record(f"{split}-{i}", image, [(q, a)], items, answer=a, qtype=qtype))
                continue
            files["pretrain"].append(_record(f"cap-{i}", image, [(DETAIL, caption(items))], items))
            files["instruct"].append(_instruct(i, image, items, rng, config.qtypes))
            text += _text_lines(items, rng, config.qtypes)
        for _ in range(config.text_scenes):
            text += _text_lines(_scene(rng, config.max_shapes), rng, config.qtypes)
        for name, rows in files.items():
            _dump(tmp / f"{name}.json", rows)
            if name != "pretrain":
                _dump(tmp / f"{name}_blind.json", [blind(r) for r in rows])
        (tmp / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in text))
        save_config(config, tmp, seed=config.seed)
    return Path(out)


def _dump(path: Path, rows: list) -> None:
    """A JSON array, one record per line (greppable and diffable; 20 % smaller than indented)."""
    path.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n")


def _text_lines(items: list[Item], rng: random.Random, qtypes: tuple[str, ...]) -> list[str]:
    """Text-only chat lines about a scene (only the answers are targets, as in instruction tuning), each with
    the description in the user turn where the image will be: one line asking every question about it, one
    turn each (many answers per line: the LLM learns to read the answer off the description from far fewer
    lines), and for one scene in four a request to describe it (the connector pre-training's task). Answers
    are most of the targets: with a plain description line per scene as well, the LLM learnt to continue
    descriptions long before it learnt to answer (measured: colour at chance after 1500 steps)."""
    described = caption(items)
    qs = _questions(items, qtypes, rng)
    lines = [
        "".join(
            f"USER: {'' if k else described + ' '}{q} ASSISTANT: {a}</s>" for k, (_, q, a) in enumerate(qs)
        )
    ]
    if rng.random() < 0.25:
        lines.append(f"USER: {described} {DETAIL} ASSISTANT: {described}</s>")
    return lines
