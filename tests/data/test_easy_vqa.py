"""`lnprobe data easy-vqa`: easy-VQA in LLaVA format, checked against the package itself and against rules
independent of the writer's question templates (qtype from the answer; captions against every question)."""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from lnprobe import cli
from lnprobe.data.easyvqa import COLOURS, SHAPES, EasyVqaConfig, caption, parse_question, write_easy_vqa
from lnprobe.data.llava import read_records
from lnprobe.errors import InputError

easy_vqa = pytest.importorskip("easy_vqa")

CONFIG = EasyVqaConfig(train_images=40, eval_images=20, val_fraction=0.1, seed=3)
SPLITS = ("train", "val", "eval")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evqa") / "out"
    write_easy_vqa(out, CONFIG)
    return out


def rows(out: Path, name: str) -> list[dict]:
    return json.loads((out / f"{name}.json").read_text())


@functools.cache
def package_questions(split: str) -> dict[int, list[tuple[str, str]]]:
    """{image id: [(question, answer)]} straight from the package."""
    texts, answers, ids = getattr(easy_vqa, f"get_{split}_questions")()
    by_image = defaultdict(list)
    for text, answer, image in zip(texts, answers, ids, strict=True):
        by_image[image].append((text, answer))
    return by_image


def images_of(records: list[dict]) -> set[int]:
    return {r["image_id"] for r in records}


def test_counts_equal_the_questions_of_the_chosen_images(built):
    train_q, test_q = package_questions("train"), package_questions("test")
    for split in SPLITS:
        records = rows(built, split)
        source = test_q if split == "eval" else train_q
        assert len(records) == sum(len(source[i]) for i in images_of(records))
        assert [(r["conversations"][0]["value"], r["answer"]) for r in records] == [
            (f"<image>\n{q}", a) for i in sorted(images_of(records)) for q, a in source[i]
        ]
    assert len(images_of(rows(built, "val"))) == 4  # 10 % of 40
    assert len(images_of(rows(built, "train"))) == 36
    assert len(images_of(rows(built, "eval"))) == 20


def test_splits_disjoint_by_image(built):
    train, val = images_of(rows(built, "train")), images_of(rows(built, "val"))
    assert not train & val
    assert all(r["image"].startswith("images/test/") for r in rows(built, "eval"))
    assert all(r["image"].startswith("images/train/") for s in ("train", "val") for r in rows(built, s))


def test_qtype_agrees_with_the_answer(built):
    """An independent rule: yes/no iff the answer is yes or no, color iff a colour, shape iff a shape."""
    expected = {**dict.fromkeys(("yes", "no"), "yes/no"), **dict.fromkeys(COLOURS, "color")}
    expected |= dict.fromkeys(SHAPES, "shape")
    for split in SPLITS:
        for r in rows(built, split):
            assert r["qtype"] == expected[r["answer"]] == r["qtypes"][0], r
            assert r["answer"] == r["conversations"][1]["value"]
            assert r["answer"] in easy_vqa.get_answers()


def test_qtype_rule_covers_every_package_question():
    for split in ("train", "test"):
        texts, answers, _ = getattr(easy_vqa, f"get_{split}_questions")()
        kinds = {parse_question(t).qtype for t in set(texts)}
        assert kinds == {"yes/no", "shape", "color"}


def test_unknown_question_raises():
    with pytest.raises(InputError, match="unrecognised question"):
        parse_question("how many shapes are there?")
    with pytest.raises(InputError, match="not a known color"):
        parse_question("is there a circle shape?")
    with pytest.raises(InputError, match="contradict"):
        caption([("what color is the shape?", "red"), ("is there a red shape?", "no")])


def test_answer_outside_the_answer_set_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(easy_vqa, "get_answers", lambda: ["yes", "no", "circle"])
    with pytest.raises(InputError, match="unexpected answer set"):
        write_easy_vqa(tmp_path / "o", CONFIG)
    monkeypatch.undo()
    monkeypatch.setattr(easy_vqa, "get_test_questions", lambda: (["is there a red shape?"], ["red"], [0]))
    with pytest.raises(InputError, match="is not a yes/no answer"):
        write_easy_vqa(tmp_path / "o", CONFIG)
    assert not (tmp_path / "o").exists()


def test_every_file_reads_as_llava(built):
    for name in (*SPLITS, "captions"):
        records = read_records(built / f"{name}.json")
        assert records and all((built / r.image).is_file() for r in records)


def yes_no_holds(question: str, answer: str, text: str) -> bool:
    """Does a yes/no answer agree with the caption? Independent of the writer: the one shape or colour
    word the question names, negated by 'not' / 'no'."""
    words = set(question.rstrip("?").split())
    (named,) = words & {*COLOURS, *SHAPES}
    present = named in text.rstrip(".").split()
    return (answer == "yes") == (present != bool(words & {"not", "no"}))


def test_captions_agree_with_every_question_of_their_image(built):
    questions = package_questions("train")
    captions = rows(built, "captions")
    assert images_of(captions) <= images_of(rows(built, "train"))  # never val or eval images
    for r in captions:
        text = r["conversations"][1]["value"]
        _, colour, shape = text.rstrip(".").split()
        assert text == f"A {colour} {shape}." and colour in COLOURS and shape in SHAPES
        assert r["image"] == f"images/train/{r['image_id']}.png"
        for q, a in questions[r["image_id"]]:
            if a in ("yes", "no"):
                assert yes_no_holds(q, a, text), (r["id"], q, a, text)
            else:
                assert a in (colour, shape), (r["id"], q, a, text)


def test_captioned_at_least_the_images_with_open_colour_and_shape_answers(built):
    """A lower bound by the simplest rule: an image answered both a colour and a shape question."""
    questions = package_questions("train")
    simple = {
        i
        for i in images_of(rows(built, "train"))
        if {a for _, a in questions[i]} & set(COLOURS) and {a for _, a in questions[i]} & set(SHAPES)
    }
    assert simple <= images_of(rows(built, "captions"))
    summary = json.loads((built / "easy_vqa.json").read_text())
    assert summary["captions"]["images"] == len(rows(built, "captions"))


def test_images_copied_and_decodable(built):
    from PIL import Image

    paths = {"train": easy_vqa.get_train_image_paths(), "test": easy_vqa.get_test_image_paths()}
    used = {
        f"images/{'test' if s == 'eval' else 'train'}/{i}.png"
        for s in SPLITS
        for i in images_of(rows(built, s))
    }
    on_disk = {str(p.relative_to(built)) for p in (built / "images").rglob("*.png")}
    assert on_disk == used
    for rel in sorted(used)[:10]:
        _, source, name = rel.split("/")
        with Image.open(built / rel) as img:
            assert img.size == (64, 64)
            img.load()
        assert (built / rel).read_bytes() == Path(paths[source][int(name[:-4])]).read_bytes()


def test_summary_counts(built):
    summary = json.loads((built / "easy_vqa.json").read_text())
    assert summary["source"]["version"] == easy_vqa_version()
    assert summary["config"]["seed"] == 3 and summary["provenance"]["seed"] == 3
    for split in SPLITS:
        records = rows(built, split)
        assert summary["records"][split] == len(records)
        assert summary["images"][split] == len(images_of(records))
        assert (
            sum(summary["qtypes"][split].values()) == sum(summary["answers"][split].values()) == len(records)
        )


def easy_vqa_version() -> str:
    from importlib import metadata

    return metadata.version("easy-vqa")


def digest(out: Path) -> dict[str, str]:
    """Every file but the summary (its provenance holds the time) by hash."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("easy_vqa.json", ".lnprobe_output.json")
    }


def test_same_seed_same_files_other_seed_other_images(built, tmp_path):
    write_easy_vqa(tmp_path / "same", CONFIG)
    assert digest(tmp_path / "same") == digest(built)
    other = EasyVqaConfig(train_images=40, eval_images=20, val_fraction=0.1, seed=4)
    write_easy_vqa(tmp_path / "other", other)
    assert images_of(rows(tmp_path / "other", "eval")) != images_of(rows(built, "eval"))


# -- the command line ----------------------------------------------------------------------------------


def fails(argv: list[str], capfd, root: Path, fragment: str) -> None:
    """Exit 2, one stderr line naming the problem, nothing written under `root`."""
    before = sorted(root.rglob("*"))
    code = cli.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"{argv}: exit {code}\n{err}"
    assert len(lines) == 1 and lines[0].startswith("lnprobe: error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert sorted(root.rglob("*")) == before


def test_cli_writes_and_force_replaces_its_own(tmp_path, capfd):
    out = tmp_path / "o"
    argv = [
        "data",
        "easy-vqa",
        str(out),
        "--train-images",
        "20",
        "--eval-images",
        "5",
        "--val-fraction",
        "0.1",
    ]
    assert cli.main(argv) == 0
    assert "captions" in capfd.readouterr().out
    fails(argv, capfd, tmp_path, "already exists")
    assert cli.main([*argv, "--force", "--seed", "1"]) == 0
    assert json.loads((out / "easy_vqa.json").read_text())["config"]["seed"] == 1


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--train-images", "0"], "--train-images 0: must be >= 1"),
        (["--eval-images", "0"], "--eval-images 0: must be >= 1"),
        (["--train-images", "5000"], "--train-images 5000: the package has 4000 train images"),
        (["--train-images", "5", "--val-fraction", "0.05"], "leaves no validation image"),
        (["--train-images", "2", "--val-fraction", "0.9"], "leaves no training image"),
        (["--val-fraction", "0.0001"], "leaves no validation image"),  # of all 4,000
        (["--val-fraction", "0"], "--val-fraction 0.0: must be > 0"),
        (["--val-fraction", "1"], "--val-fraction 1.0: must be > 0 and < 1"),
    ],
)
def test_cli_bad_arguments(flags, fragment, tmp_path, capfd):
    fails(["data", "easy-vqa", tmp_path / "o", *flags], capfd, tmp_path, fragment)


def test_cli_never_overwrites_a_foreign_directory(tmp_path, capfd):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    argv = ["data", "easy-vqa", tmp_path / "mine", "--train-images", "20", "--eval-images", "5"]
    fails(argv, capfd, tmp_path, "already exists")
    fails([*argv, "--force"], capfd, tmp_path, "was not written by `lnprobe data easy-vqa`")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_cli_missing_package(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "easy_vqa", None)  # `import easy_vqa` raises ImportError
    fails(
        ["data", "easy-vqa", tmp_path / "o", "--train-images", "20"],
        capfd,
        tmp_path,
        "easy-vqa is not installed: pip install 'lnprobe[datasets]'",
    )
