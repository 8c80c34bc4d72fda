"""A synthetic multi-modal task that needs the image: coloured shapes in the quadrants of a picture.

`write_synth(out, n, seed)` writes, deterministically per seed:

    images/NNNNN.png     64 x 64 pictures with 1-3 shapes (circle, square, triangle) in distinct quadrants
    pretrain.json        one caption per training image (LLaVA format, for the `plain` template)
    instruct.json        instruction data of three kinds (field `kind`): conversation (short questions),
                         detail (a full description) and reasoning (counting, yes/no)
    eval.json            held-out images with short-answer questions (field `answer` holds the answer)
    text.jsonl           a text-only corpus from the same world ({"text": ...}) to pre-train a tiny LM
    synth_config.json    the generator's settings and provenance

Answers cannot be guessed from the question: colours, shapes and places are drawn independently per image.
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
SIZE = 64


@dataclass(frozen=True)
class SynthConfig:
    n: int = at_least(5, 400)
    seed: int = seed_field(0)
    eval_fraction: float = ranged(0.2, 0, 1, lo_open=True, hi_open=True)
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
    return " and ".join(it.phrase() for it in items) + "."


def questions(items: list[Item], rng: random.Random) -> dict[str, tuple[str, str]]:
    """One (question, answer) per kind."""
    target = rng.choice(items)
    by_shape = [it for it in items if it.shape == target.shape]
    if len(by_shape) == 1:
        short = rng.choice(
            [
                (f"What colour is the {target.shape}?", target.colour),
                (f"Where is the {target.shape}?", target.place),
            ]
        )
    else:
        short = (f"What shape is at the {target.place}?", target.shape)
    colour = rng.choice(list(COLOURS))
    count = sum(it.colour == colour for it in items)
    shape = rng.choice(SHAPES)
    reasoning = rng.choice(
        [
            (f"How many shapes are {colour}?", NUMBERS[count]),
            (
                f"Is there a {shape} in the picture?",
                "yes" if any(it.shape == shape for it in items) else "no",
            ),
        ]
    )
    detail = ("Describe the picture in detail.", f"The picture shows {caption(items)}")
    return {"conversation": short, "detail": detail, "reasoning": reasoning}


def _conv(question: str, answer: str, image: bool = True) -> list[dict]:
    human = f"<image>\n{question}" if image else question
    return [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]


def write_synth(out: str | Path, config: SynthConfig | None = None, overwrite: bool = False) -> Path:
    """Write the synthetic dataset to OUT (atomically)."""
    from lnprobe.config import save_config
    from lnprobe.io import Output

    config = config or SynthConfig()
    output = Output(Path(out), "data synth", force=overwrite)
    rng = random.Random(config.seed)
    n_eval = int(round(config.n * config.eval_fraction))
    pretrain, instruct, evaluation, text = [], [], [], []
    with output.build() as tmp:
        (tmp / "images").mkdir()
        for i in range(config.n):
            items = scene(rng)
            image = f"images/{i:05d}.png"
            draw(items, rng).save(tmp / image)
            qa = questions(items, rng)
            if i >= config.n - n_eval:
                q, a = qa[rng.choice(("conversation", "reasoning"))]
                evaluation.append(
                    {"id": f"eval-{i}", "image": image, "answer": a, "conversations": _conv(q, a)}
                )
                continue
            pretrain.append({"id": f"cap-{i}", "image": image, "conversations": _conv("", caption(items))})
            kind = KINDS[i % len(KINDS)]
            instruct.append(
                {"id": f"{kind}-{i}", "image": image, "kind": kind, "conversations": _conv(*qa[kind])}
            )
            text += _text_lines(items, qa, rng, config.text_per_image)
        for name, rows in (("pretrain", pretrain), ("instruct", instruct), ("eval", evaluation)):
            (tmp / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
        (tmp / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in text))
        save_config(config, tmp, seed=config.seed)
    return Path(out)


def _text_lines(items: list[Item], qa: dict, rng: random.Random, n: int) -> list[str]:
    """Text-only sentences about a scene: its description, then questions answered from it."""
    described = f"The picture shows {caption(items)}"
    lines = [described]
    for kind in rng.sample(list(qa), min(n - 1, len(qa))):
        q, a = qa[kind]
        lines.append(f"{described} USER: {q} ASSISTANT: {a}")
    return lines
