"""LLaVA-format data: templates, label masks, image tokens, truncation, batching, synthetic data, errors."""

import hashlib
import json

import pytest
import torch
from PIL import Image

from lnprobe.data.llava import (
    IGNORE,
    Encoder,
    LengthGroupedBatches,
    LlavaDataset,
    Record,
    collate,
    read_records,
)
from lnprobe.data.synth import COLOURS, NUMBERS, PLACES, QTYPES, SynthConfig, write_synth
from lnprobe.data.templates import TEMPLATES, VICUNA_SYSTEM
from lnprobe.errors import InputError
from lnprobe.models.tiny import TinyConfig

N_IMG = TinyConfig().image_tokens


def write(tmp_path, records, name="data.json", images=()):
    for img in images:
        (tmp_path / img).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / img)
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


def conv(*pairs):
    return [{"from": role, "value": v} for q, a in pairs for role, v in (("human", q), ("gpt", a))]


def test_vicuna_template_matches_llava_format():
    segments = TEMPLATES.get("vicuna_v1").render([("<image>\nQ1", "A1"), ("Q2", "A2")])
    text = "".join(t for t, _ in segments)
    assert text == f"{VICUNA_SYSTEM} USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>"
    assert [t for t, target in segments if target] == [" A1</s>", " A2</s>"]


def test_llama2_and_plain_templates():
    text = "".join(t for t, _ in TEMPLATES.get("llama_2").render([("Q1", "A1"), ("Q2", "A2")]))
    assert text.startswith("[INST] <<SYS>>\n") and text.endswith(
        "Q1 [/INST] A1 </s><s>[INST] Q2 [/INST] A2 </s>"
    )
    assert TEMPLATES.get("plain").render([("<image>\n", "a cat")]) == [("<image>", False), ("a cat\n", True)]
    with pytest.raises(InputError, match="unknown template 'alpaca'"):
        TEMPLATES.get("alpaca")


@pytest.mark.parametrize("template", ["vicuna_v1", "llama_2", "plain"])
def test_labels_cover_exactly_the_answers(tiny, template):
    processor = tiny[1]
    enc = Encoder(processor, template, max_length=512)
    record = Record(0, "r0", "x.png", (("<image>\nWhat colour is the circle?", "red"),))
    ids, labels = enc.encode(record)
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    assert ids[0] == tok.bos_token_id and ids.count(image_id) == N_IMG
    assert all(label == IGNORE for i, label in zip(ids, labels, strict=True) if i == image_id)
    answer = tok.decode([label for label in labels if label != IGNORE])
    expected = {"vicuna_v1": " red</s>", "llama_2": " red </s>", "plain": "red\n"}[template]
    assert answer == expected


def test_truncation_keeps_image_tokens_or_fails(tiny):
    long_answer = " ".join(["red"] * 200)
    record = Record(3, "long", "x.png", (("<image>\nDescribe.", long_answer),))
    ids, labels = Encoder(tiny[1], "vicuna_v1", max_length=80).encode(record)
    assert len(ids) == 80 and ids.count(tiny[1].tokenizer.convert_tokens_to_ids("<image>")) == N_IMG
    with pytest.raises(InputError, match=r"record 3 \(id long\): max_length 20 would cut its image tokens"):
        Encoder(tiny[1], "vicuna_v1", max_length=20).encode(record)
    with pytest.raises(InputError, match="no answer tokens within max_length"):
        Encoder(tiny[1], "vicuna_v1", max_length=60).encode(record)


@pytest.mark.parametrize(
    "records, message",
    [
        ([], "the dataset is empty"),
        (
            [{"id": "a", "conversations": conv(("hi", "yo"))[:1]}],
            r"record 0 \(id a\): conversation has no assistant",
        ),
        (
            [{"id": "b", "image": "x.png", "conversations": conv(("no placeholder", "x"))}],
            "image-token count mismatch",
        ),
        ([{"id": "c", "conversations": conv(("<image>\nq", "x"))}], "image-token count mismatch"),
        (
            [{"id": "d", "image": "x.png", "conversations": conv(("<image> <image>", "x"))}],
            "image-token count",
        ),
        (
            [{"id": "e", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}],
            "must alternate",
        ),
        ([{"id": "f"}], "missing 'conversations'"),
    ],
)
def test_bad_records(tmp_path, records, message):
    with pytest.raises(InputError, match=message):
        read_records(write(tmp_path, records))


def test_malformed_json_names_the_line(tmp_path):
    (tmp_path / "a.json").write_text('[{"id": 1,\n  "conversations": ]')
    with pytest.raises(InputError, match=r"a.json: malformed JSON at line 2"):
        read_records(tmp_path / "a.json")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": 1, "conversations": conv(("q", "a"))}) + "\n{oops\n")
    with pytest.raises(InputError, match=r"b.jsonl: line 2: malformed JSON"):
        read_records(tmp_path / "b.jsonl")


def test_missing_and_unreadable_images(tmp_path, tiny):
    records = [
        {"id": "ok", "image": "img/a.png", "conversations": conv(("<image>\nq", "a"))},
        {"id": "gone", "image": "img/missing.png", "conversations": conv(("<image>\nq", "b"))},
    ]
    path = write(tmp_path, records, images=["img/a.png"])
    with pytest.raises(InputError, match=r"img/missing.png: image missing \(record 1, id gone"):
        LlavaDataset(path, tiny[1])
    ds = LlavaDataset(path, tiny[1], skip_missing=True)
    assert (len(ds), ds.skipped) == (1, 1)
    assert ds[0]["pixel_values"].shape == (3, 32, 32)
    (tmp_path / "img/a.png").write_bytes(b"not a png")
    assert ds[0]["pixel_values"].shape == (3, 32, 32)  # read once: the dataset keeps what it decoded
    with pytest.raises(InputError, match=r"img/a.png: unreadable image .*\(record 0, id ok"):
        LlavaDataset(path, tiny[1], skip_missing=True, decode_all=False)[0]  # decoded on first read
    with pytest.raises(InputError, match=r"img/a.png: unreadable image .*record 0, id ok"):
        LlavaDataset(path, tiny[1], skip_missing=True)  # found when the data is opened


def test_collate_pads_and_checks_image_tokens_per_row(tiny):
    image_id = tiny[1].tokenizer.convert_tokens_to_ids("<image>")
    pix = torch.zeros(3, 32, 32)

    def item(n_image, n_text, rid):
        ids = torch.tensor([1] + [image_id] * n_image + [7] * n_text)
        return {"input_ids": ids, "labels": ids.clone(), "pixel_values": pix, "id": rid}

    batch = collate(
        [item(N_IMG, 3, "a"), item(N_IMG, 1, "b")], pad_id=3, image_token_id=image_id, n_image_tokens=N_IMG
    )
    assert batch["input_ids"].shape == (2, 1 + N_IMG + 3) and batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["attention_mask"][1].tolist() == [1] * (1 + N_IMG + 1) + [0, 0]
    assert batch["labels"][1, -2:].tolist() == [IGNORE, IGNORE]
    # 17 + 15 image tokens pass transformers' batch-total check; lnprobe checks each row
    with pytest.raises(InputError, match="record id x: 17 image tokens, expected 16"):
        collate([item(N_IMG + 1, 1, "x"), item(N_IMG - 1, 3, "y")], 3, image_id, N_IMG)


def test_length_grouped_batches():
    lengths = [(i * 37) % 101 + 1 for i in range(200)]
    sampler = LengthGroupedBatches(lengths, batch_size=8, seed=3, group=4)
    epoch0 = sampler.epoch(0)
    assert sorted(i for b in epoch0 for i in b) == list(range(200))
    assert epoch0 == LengthGroupedBatches(lengths, 8, seed=3, group=4).epoch(0)  # deterministic
    assert epoch0 != sampler.epoch(1)

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    random_batches = [list(range(200))[i : i + 8] for i in range(0, 200, 8)]
    assert padded(epoch0) < 0.8 * padded(random_batches)


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in ("lnprobe_config.json", ".lnprobe_output.json"):  # times
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_synth_is_deterministic_and_answerable(tmp_path):
    a = write_synth(tmp_path / "a", SynthConfig(n=100, seed=5))
    b = write_synth(tmp_path / "b", SynthConfig(n=100, seed=5))
    c = write_synth(tmp_path / "c", SynthConfig(n=100, seed=6))
    assert _digest(a) == _digest(b) != _digest(c)
    instruct = json.loads((a / "instruct.json").read_text())
    pretrain = json.loads((a / "pretrain.json").read_text())
    evaluation = json.loads((a / "eval.json").read_text())
    val = json.loads((a / "val.json").read_text())
    assert {r["kind"] for r in instruct} == {"conversation", "detail", "reasoning"}
    assert len(evaluation) == 20 and len(val) == 5 and len(pretrain) == len(instruct) == 75
    held = {r["image"] for r in evaluation} | {r["image"] for r in val}
    assert not held & {r["image"] for r in instruct} and len(held) == 25
    assert [r["qtype"] for r in evaluation] == [QTYPES[i % 5] for i in range(5, 25)]  # types cycle
    for r in instruct + evaluation:  # every answer agrees with the pixels of its picture
        image = Image.open(a / r["image"]).convert("RGB")
        turns = r["conversations"]
        for q, ans in zip(turns[::2], turns[1::2], strict=True):
            assert _answer_from_pixels(image, q["value"].replace("<image>\n", "")) == ans["value"], r["id"]
    lines = (a / "text.jsonl").read_text().splitlines()
    assert lines and all("<image>" not in json.loads(line)["text"] for line in lines)
    assert len(read_records(a / "instruct.json")) == 75  # valid LLaVA format
    blind = json.loads((a / "eval_blind.json").read_text())
    assert [r["conversations"][0]["value"] for r in blind] == [
        r["conversations"][0]["value"].removeprefix("<image>\n") for r in evaluation
    ]
    assert all("image" not in r for r in blind) and len(read_records(a / "eval_blind.json")) == 20


def _answer_from_pixels(image, question: str) -> str:
    """The answer read off the picture itself: each quadrant's colour from its pixels, its shape from how
    much of its bounding box it fills (square ~1, circle ~0.79, triangle ~0.5)."""
    import numpy as np

    pixels = np.asarray(image).astype(int)
    quads = {}
    for place, (qx, qy) in PLACES.items():
        q = pixels[qy * 32 : qy * 32 + 32, qx * 32 : qx * 32 + 32]
        for colour, rgb in COLOURS.items():
            mask = np.abs(q - np.array(rgb)).sum(-1) < 30
            if mask.sum() > 20:
                ys, xs = np.nonzero(mask)
                fill = mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
                quads[place] = (colour, "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle")
    if question.startswith("How many"):
        return NUMBERS[len(quads)]
    if question.startswith("Is there a"):
        words = question.removeprefix("Is there a ").removesuffix(" in the picture?").split()
        found = {c for c, _ in quads.values()} if words[-1] == "shape" else {s for _, s in quads.values()}
        return "yes" if words[0] in found else "no"
    single = {"What colour is the shape?": 0, "What shape is in the picture?": 1, "Where is the shape?": 2}
    if question in single:
        assert len(quads) == 1, "a question about the only shape of a picture with several"
        place, (colour, shape) = next(iter(quads.items()))
        return (colour, shape, place)[single[question]]
    if question == "Describe the picture in detail.":
        return " ".join(
            f"a {quads[p][0]} {quads[p][1]} at the {p}." if p in quads else f"nothing at the {p}."
            for p in PLACES
        )
    place = question.split("at the ")[1].rstrip("?")
    return quads[place][0] if question.startswith("What colour") else quads[place][1]


def test_text_corpus_lines_are_plain_captions(tmp_path, tiny):
    from lnprobe.data.llava import IGNORE, Encoder, read_records

    path = tmp_path / "text.jsonl"
    path.write_text('{"text": "a red circle"}\n{"text": "USER: hi ASSISTANT: yes"}\n')
    records = read_records(path)
    assert [r.turns for r in records] == [(("", "a red circle"),), (("", "USER: hi ASSISTANT: yes"),)]
    assert all(r.image is None for r in records)
    ids, labels = Encoder(tiny[1], "plain", 64).encode(records[0])
    assert all(label != IGNORE for label in labels[1:])  # the whole text is the target (after BOS)
    path.write_text('{"text": "<image> no"}\n')
    with pytest.raises(InputError, match="cannot hold '<image>'"):
        read_records(path)


def _answer_from_caption(caption: str, question: str) -> str:
    """The answer read off a description `a red circle at the top left. nothing at the top right. ...`."""
    quads = {}
    for sentence in caption.rstrip(".").split(". "):
        words = sentence.split()
        if words[0] == "a":
            quads[" ".join(words[-2:])] = (words[1], words[2])
    if question.startswith("How many"):
        return NUMBERS[len(quads)]
    single = {"What colour is the shape?": 0, "What shape is in the picture?": 1, "Where is the shape?": 2}
    if question in single:
        place, (colour, shape) = next(iter(quads.items()))
        return (colour, shape, place)[single[question]] if len(quads) == 1 else "?"
    if question.startswith("Is there a"):
        words = question.removeprefix("Is there a ").removesuffix(" in the picture?").split()
        found = {c for c, _ in quads.values()} if words[-1] == "shape" else {s for _, s in quads.values()}
        return "yes" if words[0] in found else "no"
    place = question.split("at the ")[1].rstrip("?")
    return quads[place][0] if question.startswith("What colour") else quads[place][1]


@pytest.mark.parametrize("single", [False, True])
def test_synth_question_types_text_scenes_and_dense_turns(tmp_path, single):
    """`qtypes` limits every file to those question types; a conversation asks the colour and the shape at
    every occupied place (or, with one shape per picture, its colour, shape and place); the text corpus
    holds per scene a description, a describe request and one line with every question, each answer
    agreeing with the description (and every picture's answers agree with its pixels); `text_scenes` adds
    scenes."""
    import re

    from lnprobe.data.synth import SINGLE

    kinds, most = (SINGLE, 1) if single else (("colour", "shape", "count"), 3)
    a = write_synth(tmp_path / "a", SynthConfig(n=40, seed=2, qtypes=kinds, max_shapes=most))
    b = write_synth(tmp_path / "b", SynthConfig(n=40, seed=2, qtypes=kinds, max_shapes=most, text_scenes=7))
    instruct = json.loads((a / "instruct.json").read_text())
    held = json.loads((a / "val.json").read_text()) + json.loads((a / "eval.json").read_text())
    assert [r["qtype"] for r in held] == [kinds[i % 3] for i in range(len(held))]  # the types cycle
    assert {q for r in instruct for q in r["qtypes"]} == {*kinds, "detail"}
    for r in instruct + held:
        image = Image.open(a / r["image"]).convert("RGB")
        shapes = int(NUMBERS.index(_answer_from_pixels(image, "How many shapes are there?")))
        assert 1 <= shapes <= most
        if r.get("kind") == "conversation":
            want = sorted(SINGLE) if single else ["colour"] * shapes + ["shape"] * shapes
            assert sorted(r["qtypes"]) == want, r["id"]
        turns = r["conversations"]
        for q, ans in zip(turns[::2], turns[1::2], strict=True):
            assert _answer_from_pixels(image, q["value"].replace("<image>\n", "")) == ans["value"], r["id"]
    lines = [json.loads(x)["text"] for x in (a / "text.jsonl").read_text().splitlines()]
    more = [json.loads(x)["text"] for x in (b / "text.jsonl").read_text().splitlines()]
    ask = [x for x in lines if "Describe the picture" not in x]
    assert len(ask) == len(instruct) and len([x for x in more if "Describe" not in x]) == len(ask) + 7
    assert 0 < len(lines) - len(ask) < len(ask)  # a describe request for some scenes
    caption = None
    for line in lines:
        turns = re.findall(r"USER: (.*?) ASSISTANT: (.*?)</s>", line)
        assert "".join(f"USER: {q} ASSISTANT: {ans}</s>" for q, ans in turns) == line  # nothing else
        if "Describe the picture" in line:  # follows the questions about the same scene
            assert line == f"USER: {caption} Describe the picture in detail. ASSISTANT: {caption}</s>"
            continue
        caption = turns[0][0].rsplit(". ", 1)[0] + "."
        questions = [(q.removeprefix(caption + " "), ans) for q, ans in turns]
        shapes = int(NUMBERS.index(_answer_from_caption(caption, "How many")))
        assert len(questions) == (3 if single else 1 + 2 * shapes) and 1 <= shapes <= most
        for q, ans in questions:
            assert _answer_from_caption(caption, q) == ans, (caption, q)
    with pytest.raises(InputError, match="--qtypes"):
        SynthConfig(qtypes=("colour", "size"))
    with pytest.raises(InputError, match="--max-shapes 1"):
        SynthConfig(qtypes=("the-colour",))


def test_small_datasets_keep_their_processed_items(tmp_path, tiny, monkeypatch):
    """A dataset whose processed items fit CACHE_BYTES decodes and tokenises each record once: later reads
    return the same item, equal to a fresh one; above the cap nothing is kept."""
    import lnprobe.data.llava as llava

    data = write_synth(tmp_path / "d", SynthConfig(n=12, seed=0)) / "instruct.json"
    ds = LlavaDataset(data, tiny[1])
    first = ds[3]
    assert ds[3] is first
    fresh = LlavaDataset(data, tiny[1])
    monkeypatch.setattr(llava, "CACHE_BYTES", 0)
    uncached = LlavaDataset(data, tiny[1])
    assert uncached[3] is not uncached[3]
    for other in (fresh[3], uncached[3]):
        assert torch.equal(first["input_ids"], other["input_ids"]) and torch.equal(
            first["labels"], other["labels"]
        )
        assert torch.equal(first["pixel_values"], other["pixel_values"])


def test_datasets_share_processed_items_by_fingerprint(tmp_path, tiny, monkeypatch):
    """Datasets over the same file, images and processing share their items in one process (a sweep's runs
    in a worker decode once); a changed image, file or template gives new items; the total stays within
    CACHE_BYTES (least recently used dropped first)."""
    import os

    import lnprobe.data.llava as llava

    monkeypatch.setattr(llava, "_SHARED", llava.OrderedDict())
    data = write_synth(tmp_path / "d", SynthConfig(n=12, seed=0)) / "instruct.json"
    first = LlavaDataset(data, tiny[1])[3]
    again = LlavaDataset(data, tiny[1])
    assert again[3] is first and len(llava._SHARED) == 1
    assert LlavaDataset(data, tiny[1], template="chat")[3] is not first
    image = data.parent / LlavaDataset(data, tiny[1]).records[3].image
    os.utime(image, ns=(0, 0))  # the same bytes, another modification time: not trusted to be the same
    changed = LlavaDataset(data, tiny[1])
    assert changed[3] is not first
    assert torch.equal(changed[3]["pixel_values"], first["pixel_values"])
    assert len(llava._SHARED) == 3
    one = 3 * 32 * 32 * 4 + 64  # the tiny processor's image: 3 x 32 x 32 float32
    monkeypatch.setattr(llava, "CACHE_BYTES", one * len(changed) * 2)  # room for two datasets' items
    LlavaDataset(data, tiny[1], max_length=512)[0]
    assert len(llava._SHARED) <= 2 and LlavaDataset(data, tiny[1])[3] is changed[3]


def test_chatml_and_the_tokenizers_own_eos_with_smollm2(smollm2):
    """SmolLM2's EOS is `<|im_end|>` and its BOS `<|im_start|>`: an answer ends with that one EOS token (not
    the pieces of `</s>`), and a ChatML prompt that starts with the BOS gets no second one."""
    import copy
    from types import SimpleNamespace

    from lnprobe.data.llava import IGNORE, Encoder, Record

    tok = copy.deepcopy(smollm2[1].processor)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image = SimpleNamespace(crop_size={"height": 32, "width": 32})
    processor = SimpleNamespace(tokenizer=tok, patch_size=16, image_processor=image)
    record = Record(0, "r", "x.png", (("<image>\nwhat color is the shape?", "blue"),))
    for template, answer in (("chatml", "blue<|im_end|>"), ("chat", " blue<|im_end|>")):
        ids, labels = Encoder(processor, template, 64).encode(record)
        assert tok.decode([t for t in labels if t != IGNORE]) == answer
        assert ids.count(tok.convert_tokens_to_ids("<image>")) == 4
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    prompt = Encoder(processor, "chatml", 64).encode_prompt("what?")
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
