"""The stages before `assemble`: text LLM pre-training (with sentence compression) and contrastive vision
pre-training. Each learns (its loss falls on data it can fit), saves a loadable checkpoint, refuses bad
input with one line."""

import json
import random
from dataclasses import replace

import pytest
import torch

from lnprobe.cli import main
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.miniature.config import SHAPE
from lnprobe.models.tiny import build_tokenizer, save_tiny_part
from lnprobe.pretrain.text import TextPretrainConfig, _compressed, pretrain_text, tokenize
from lnprobe.pretrain.vision import VisionPretrainConfig, pretrain_vision


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    data = write_synth(root / "data", SynthConfig(n=60, seed=3))
    for part in ("lm", "vision"):
        save_tiny_part(root / part, replace(SHAPE, seed=0), part)
    return root, data


def test_tokenize_marks_context_sentences_and_the_answers():
    tok = build_tokenizer(kind="words", image_token=False)
    text = (
        "USER: a red circle at the top left. nothing at the top right. How many shapes are there? "
        "ASSISTANT: one</s>USER: What colour is the shape at the top left? ASSISTANT: red</s>"
    )
    ids, spans, labels = tokenize(tok, text)
    words = tok.convert_ids_to_tokens(ids)
    assert [words[a:b] for a, b in spans] == [
        ["a", "red", "circle", "at", "the", "top", "left", "."],
        ["nothing", "at", "the", "top", "right", "."],
    ]  # the question (last sentence) and later turns are never compressed
    assert len(labels) == len(ids) and "<unk>" not in words
    assert [words[i] for i, lab in enumerate(labels) if lab != -100] == ["one", "</s>", "red", "</s>"]
    assert all(labels[i] == ids[i] for i, lab in enumerate(labels) if lab != -100)
    assert " ".join(words[1:]).endswith(
        "one </s> USER : What colour is the shape at the top left ? ASSISTANT : red </s>"
    )
    plain_ids, plain_spans, plain_labels = tokenize(tok, "a red circle at the top left.")
    assert plain_spans == [] and plain_labels == [-100, *plain_ids[1:]] and plain_ids[0] == tok.bos_token_id
    # text around the turns is not a chat line: all of it is language modelling
    _, spans, labels = tokenize(tok, "USER: a red circle. ASSISTANT: one</s> and more")
    assert spans == [] and labels.count(-100) == 1


def test_compressed_sentences_are_the_mean_of_their_word_embeddings():
    embed = torch.nn.Embedding(50, 8)
    ids = list(range(10, 22))
    spans, labels = [(2, 5), (5, 9)], [-100] * 10 + [20, 21]
    vectors, got = _compressed(embed, ids, spans, labels, 1.0, random.Random(0))
    table = embed(torch.tensor(ids))
    assert vectors.shape[0] == len(ids) - 7 + 2
    assert torch.allclose(vectors[2], table[2:5].mean(0)) and torch.allclose(vectors[3], table[5:9].mean(0))
    assert torch.equal(vectors[4:], table[9:]) and torch.equal(vectors[:2], table[:2])
    assert got == [-100] * 5 + [20, 21]  # context and compressed positions are never targets

    vectors, got = _compressed(embed, ids, spans, labels, 0.0, random.Random(0))
    assert torch.equal(vectors, table) and got == labels


def test_text_pretraining_learns_and_saves_a_text_lm(parts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, data = parts
    result = pretrain_text(
        TextPretrainConfig(
            llm=str(root / "lm"),
            data=str(data / "text.jsonl"),
            out=str(tmp_path / "lm"),
            steps=40,
            progress=False,
        )
    )
    losses = result["losses"]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5  # the corpus is learnable: the loss halves
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    assert AutoTokenizer.from_pretrained(tmp_path / "lm").convert_tokens_to_ids("circle") is not None
    assert not torch.equal(
        model.lm_head.weight, AutoModelForCausalLM.from_pretrained(root / "lm").lm_head.weight
    )
    saved = json.loads((tmp_path / "lm" / "lnprobe_config.json").read_text())
    assert (
        saved["config"]["steps"] == 40
        and len(json.loads((tmp_path / "lm" / "losses.json").read_text())["loss"]) == 40
    )


def test_vision_pretraining_aligns_images_with_their_captions(parts, tmp_path):
    """The contrastive loss (matching each picture to its caption among the batch's) falls by more than half
    a nat, and the saved tower is a changed, loadable CLIP vision model with its image processor."""
    from transformers import CLIPVisionModel

    root, data = parts
    result = pretrain_vision(
        VisionPretrainConfig(
            vision=str(root / "vision"),
            data=str(data / "pretrain.json"),
            out=str(tmp_path / "v"),
            steps=60,
            batch_size=32,
            progress=False,
        )
    )
    losses = result["losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    tower = CLIPVisionModel.from_pretrained(tmp_path / "v")
    before = CLIPVisionModel.from_pretrained(root / "vision")
    assert any(not torch.equal(a, b) for a, b in zip(tower.parameters(), before.parameters(), strict=True))
    assert (tmp_path / "v" / "preprocessor_config.json").is_file()


def test_pretraining_bad_input_is_one_line_exit_2(parts, tmp_path, capsys):
    root, data = parts
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a red circle"}\n{"txt": 3}\n')
    code = main(
        ["pretrain", "text", "--llm", str(root / "lm"), "--data", str(bad), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and f"{bad}:2" in err and not (tmp_path / "o").exists()
    code = main(
        [
            "pretrain",
            "text",
            "--llm",
            str(root / "lm"),
            "--data",
            str(data / "text.jsonl"),
            "--out",
            str(data),
        ]
    )
    assert code == 2 and "input" in capsys.readouterr().err  # never writes over an input
    captions = tmp_path / "caps.json"
    captions.write_text(
        json.dumps(
            [{"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}]}]
        )
    )
    code = main(
        [
            "pretrain",
            "vision",
            "--vision",
            str(root / "vision"),
            "--data",
            str(captions),
            "--out",
            str(tmp_path / "v"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "has no image" in err and not (tmp_path / "v").exists()
    code = main(
        [
            "pretrain",
            "vision",
            "--vision",
            str(root / "vision"),
            "--data",
            str(data / "pretrain.json"),
            "--out",
            str(tmp_path / "v"),
            "--batch-size",
            "1",
        ]
    )
    assert code == 2 and "--batch-size 1" in capsys.readouterr().err
    broken = tmp_path / "img"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    one = [{"id": "b", "image": "x.png", "conversations": [{"from": "human", "value": "<image>\nhi"},
                                                          {"from": "gpt", "value": "x"}]}]  # fmt: skip
    (broken / "caps.json").write_text(json.dumps(one))
    code = main(["pretrain", "vision", "--vision", str(root / "vision"), "--data", str(broken / "caps.json"),
                 "--out", str(tmp_path / "v")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "x.png" in err and "id b" in err and not (tmp_path / "v").exists()
