"""The output policy (lnprobe.io.Output), the declared config ranges (lnprobe.config.validate), the text
readers (lnprobe.textio) and the up-front image check (lnprobe.data.images)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest
from PIL import Image

from lnprobe import config as cfgmod
from lnprobe.data import images
from lnprobe.errors import InputError
from lnprobe.io import MARKER, Output, marker_command
from lnprobe.textio import one_line, parse_json, read_text, read_yaml


def test_output_builds_atomically_and_marks_its_command(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with Output(out, "similarity").build() as tmp:
        (tmp / "x.txt").write_text("1")
        assert not out.exists()  # nothing at the target until the block ends
    assert (out / "x.txt").read_text() == "1" and marker_command(out) == "similarity"
    with pytest.raises(InputError, match="already exists"):
        Output(out, "similarity").check()
    with Output(out, "similarity", force=True).build() as tmp:
        (tmp / "y.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "y.txt"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no temporary sibling left


def test_a_failed_build_leaves_nothing_not_even_parents(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError), Output(out, "gradvar").build() as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_replacement_failure_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    with Output(out, "lnshift").build() as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), Output(out, "lnshift", force=True).build():
        raise RuntimeError("boom")
    assert (out / "old.txt").read_text() == "old"


def test_force_never_replaces_foreign_or_other_commands_outputs(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="not written by `lnprobe claims`"):
        Output(foreign, "claims", force=True).check()
    with Output(tmp_path / "sim", "similarity").build():
        pass
    with pytest.raises(InputError, match="not written by `lnprobe claims`"):
        Output(tmp_path / "sim", "claims", force=True).check()
    (foreign / MARKER).write_text("{not json")  # a damaged marker is no marker
    with pytest.raises(InputError, match="not written by"):
        Output(foreign, "claims", force=True).check()


def test_inputs_are_never_outputs(tmp_path):
    model = tmp_path / "runs" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    with pytest.raises(InputError, match="is an input"):
        Output(model, "similarity", inputs=(str(model),)).check()
    with pytest.raises(InputError, match="contains the input"):
        Output(tmp_path / "runs", "similarity", force=True, inputs=(str(model),)).check()
    with pytest.raises(InputError, match="contains the input"):  # through a symlink too
        (tmp_path / "alias").symlink_to(tmp_path / "runs")
        Output(tmp_path / "alias" / "model", "similarity", inputs=(str(model / "config.json"),)).check()
    inside = model / "sub"  # a new output inside an input folder is allowed ...
    Output(inside, "similarity", inputs=(str(model),)).check()
    with Output(inside, "similarity", inputs=(str(model),)).build():
        pass
    with pytest.raises(InputError, match="lies inside the input"):  # ... replacing one there is not
        Output(inside, "similarity", force=True, inputs=(str(model),)).check()
    Output(tmp_path / "elsewhere", "similarity", inputs=("tiny", "llava-hf/llava-1.5-7b-hf")).check()


def test_unwritable_locations(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        Output(tmp_path / "file" / "out", "tiny").check()
    with pytest.raises(InputError, match="cannot write under /proc"):
        Output("/proc/lnprobe/out", "tiny").check()


def test_file_outputs_use_their_meta_json_as_marker(tmp_path):
    out = tmp_path / "subset.json"
    with Output(out, "data subset", is_file=True).build() as tmp:
        (tmp / "subset.json").write_text("[]")
        (tmp / "subset.meta.json").write_text(json.dumps({"command": "data subset"}))
    assert out.read_text() == "[]" and marker_command(out) == "data subset"
    Output(out, "data subset", force=True, is_file=True).check()
    other = tmp_path / "notes.json"
    other.write_text("[]")
    with pytest.raises(InputError, match="not written by"):
        Output(other, "data subset", force=True, is_file=True).check()


@dataclass(frozen=True)
class Demo:
    rate: float = cfgmod.positive(1.0)
    frac: float = cfgmod.ranged(0.5, 0, 1, hi_open=True)
    count: int = cfgmod.at_least(1, 3)
    maybe: int | None = cfgmod.at_least(0, None)
    mode: str = cfgmod.choice("a", ("a", "b"))
    names: tuple[str, ...] = ("x",)

    def __post_init__(self):
        cfgmod.validate(self)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rate": 0.0}, "--rate 0.0: must be > 0"),
        ({"rate": float("inf")}, "--rate inf: must be a finite number"),
        ({"rate": float("nan")}, "--rate nan: must be a finite number"),
        ({"rate": "abc"}, "--rate 'abc': expected a number"),
        ({"rate": True}, "--rate True: expected a number"),
        ({"frac": 1.0}, "--frac 1.0: must be >= 0 and < 1"),
        ({"count": 0}, "--count 0: must be >= 1"),
        ({"count": 2.0}, "--count 2.0: expected an integer"),
        ({"maybe": -1}, "--maybe -1: must be >= 0"),
        ({"mode": "c"}, "--mode 'c': must be one of a, b"),
        ({"names": [1]}, "--names [1]: expected a list"),
    ],
)
def test_validate_names_the_flag_and_the_rule(kw, message):
    with pytest.raises(InputError) as info:
        Demo(**kw)
    assert str(info.value) == message


def test_validate_accepts_every_value_in_range():
    Demo(rate=1e-12, frac=0.0, count=1, maybe=None, mode="b", names=["y"])
    Demo(rate=5, frac=0.999, maybe=0)


def test_text_readers(tmp_path):
    (tmp_path / "bin").write_bytes(b"ok\xff")
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 2: 0xff\)"):
        read_text(tmp_path / "bin")
    with pytest.raises(InputError, match="is a directory"):
        read_text(tmp_path)
    with pytest.raises(InputError, match="unreadable JSON .*4300"):
        parse_json("[" + "1" * 5000 + "]", "f")
    with pytest.raises(InputError, match="unreadable JSON"):
        parse_json("[" * 100_000, "f")
    assert parse_json('{"a": [1]}', "f") == {"a": [1]}


def test_parser_messages_name_the_problem_in_one_sentence(tmp_path):
    """A 5000-digit integer or deep nesting is named, not Python's message cut mid-word; a YAML error
    gives its line."""
    big = tmp_path / "big.yaml"
    big.write_text("hidden_size: " + "1" * 5000 + "\n")
    digits = "an integer with 5000 digits; Python reads at most 4300"
    cases = [
        (lambda: parse_json('{"n": ' + "1" * 5000 + "}", "c.json"), f"c.json: unreadable JSON ({digits})"),
        (lambda: parse_json("[" * 100_000, "c.json"), "c.json: unreadable JSON (nested too deeply)"),
        (lambda: read_yaml(big), f"{big}: unreadable YAML ({digits})"),
    ]
    for call, message in cases:
        with pytest.raises(InputError) as info:
            call()
        assert str(info.value) == message
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: c: d\n")
    with pytest.raises(InputError, match=r"bad.yaml: malformed YAML at line 2 \(mapping values are not"):
        read_yaml(bad)


def test_one_line_keeps_the_reason_and_cuts_at_a_word():
    assert one_line(ValueError("Validation error for field 'x':\n    TypeError: expected int, got str")) == (
        "Validation error for field 'x': TypeError: expected int, got str"
    )
    assert one_line(KeyError()) == "KeyError" and one_line("first\nsecond") == "first"
    cut = one_line("alpha " * 50, limit=40)
    assert cut == "alpha alpha alpha alpha alpha alpha..." and len(cut) <= 40


def _png(path, colour=(255, 0, 0)):
    Image.new("RGB", (8, 8), colour).save(path)


def test_images_are_decoded_once_and_again_when_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("LNPROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(images, "_SEEN", {})
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for p in paths:
        _png(p)
    calls = []
    real = images.decode
    monkeypatch.setattr(images, "decode", lambda p: calls.append(p) or real(p))
    images.check_images((p, "r") for p in paths)
    assert len(calls) == 3 and images.cache_file().is_file()
    images.check_images((p, "r") for p in paths)
    assert len(calls) == 3  # remembered in this process
    monkeypatch.setattr(images, "_SEEN", {})
    images.check_images((p, "r") for p in paths)
    assert len(calls) == 3  # remembered on disk
    _png(paths[1], (0, 0, 255))
    os.utime(paths[1], ns=(1, 1))
    images.check_images((p, "r") for p in paths)
    assert calls[3:] == [paths[1]]  # only the changed file again
    paths[2].write_bytes(b"GIF89a broken")
    with pytest.raises(InputError, match=r"2.png: unreadable image .*\(record 7\)"):
        images.check_images([(paths[2], "record 7")])
