"""The miniature's shipped backbones: the miniature's shape, built by `lnprobe pretrain backbones` (the
provenance says so), and a text LLM that already answers the task's questions from compressed sentences,
as the LLM of the paper already follows instructions before it sees an image."""

import json
from dataclasses import replace

import pytest

from lnprobe.cli import main
from lnprobe.miniature.backbones import QTYPES, SHIPPED, shipped, text_accuracy
from lnprobe.miniature.config import SHAPE


def test_shipped_backbones_have_the_miniature_shape_and_provenance():
    llm = json.loads((SHIPPED / "llm" / "config.json").read_text())
    vision = json.loads((SHIPPED / "vision" / "config.json").read_text())
    assert (llm["hidden_size"], llm["intermediate_size"], llm["num_hidden_layers"]) == (
        SHAPE.hidden_size,
        SHAPE.intermediate_size,
        SHAPE.num_layers,
    )
    assert (vision["hidden_size"], vision["image_size"], vision["patch_size"]) == (
        SHAPE.vision_hidden_size,
        SHAPE.image_size,
        SHAPE.patch_size,
    )
    for part, kind in (("llm", "TextPretrainConfig"), ("vision", "VisionPretrainConfig")):
        saved = json.loads((SHIPPED / part / "lnprobe_config.json").read_text())
        assert saved["config_type"] == kind and saved["provenance"]["seed"] == 1000, part
    assert not list(SHIPPED.rglob("*.bin")) and not list(SHIPPED.rglob("*.pt"))  # safetensors only


def test_shipped_llm_answers_from_compressed_sentences_and_a_fresh_one_does_not(tmp_path):
    """Planted and null: the shipped LLM answers >= 90 % of each question type exactly; the same shape
    untrained answers almost none, so the measure is not satisfied by construction."""
    from lnprobe.models.tiny import save_tiny_part

    got = text_accuracy(shipped("llm"), seed=7, n=90)
    assert set(got) == set(QTYPES) and min(got.values()) >= 0.9, got
    save_tiny_part(tmp_path / "fresh", replace(SHAPE, seed=0), "lm")
    fresh = text_accuracy(tmp_path / "fresh", seed=7, n=30)
    assert max(fresh.values()) <= 0.2, fresh


def test_pretrain_backbones_builds_each_step_once_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "bb"
    args = ["pretrain", "backbones", "--out", str(out), "--images", "20", "--text-scenes", "5"]
    fast = [*args, "--vision-steps", "2", "--text-steps", "2", "--no-progress"]
    assert main(fast) == 0
    for part in (
        "data/text.jsonl",
        "vision/model.safetensors",
        "llm/model.safetensors",
        "text_accuracy.json",
    ):
        assert (out / part).is_file(), part
    scores = json.loads((out / "text_accuracy.json").read_text())
    assert set(scores) == set(QTYPES)
    stamp = (out / "llm" / "model.safetensors").stat().st_mtime_ns
    assert main(fast) == 0 and (out / "llm" / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    capsys.readouterr()
    assert main([*fast[:-5], "--images", "3"]) == 2
    assert "--images" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    assert main(["pretrain", "backbones", "--out", str(foreign), "--text-steps", "1"]) == 2
    assert (foreign / "keep.txt").read_text() == "x" and len(list(foreign.iterdir())) == 1


@pytest.mark.parametrize("flag", ["--llm", "--vision"])
def test_pretrain_flag_excludes_given_backbones(flag, tmp_path, capsys):
    code = main(["study", "--out", str(tmp_path / "d"), "--smoke", "--pretrain", flag, "x"])
    assert code == 2 and "--pretrain" in capsys.readouterr().err and not (tmp_path / "d").exists()
