"""`lnprobe study --data`: the study on a user's LLaVA-format data (issue 30). The data stage's files and
rules, bad input refused before anything trains, and one smoke study end to end on the shipped backbones
with the synthetic task's files passed as if they were the user's (their kinds stripped, so the first-words
rule names them), the learning rates picked once, and the forgetting stage."""

import hashlib
import json
from pathlib import Path

import pytest

from lnprobe import cli
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.errors import InputError
from lnprobe.miniature.config import MiniatureConfig
from lnprobe.miniature.userdata import blind, prepare_user_data, question_kind, split_by_image


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> Path:
    """A user's folder: the synthetic task's train / val / eval questions with their kind fields removed,
    plus a text file for the forgetting measure."""
    root = tmp_path_factory.mktemp("user")
    synth = write_synth(root / "synth", SynthConfig(n=120, seed=3, eval_fraction=0.25, val_fraction=0.1))
    for name in ("instruct", "val", "eval", "pretrain"):
        rows = json.loads((synth / f"{name}.json").read_text())
        rows = [{k: v for k, v in r.items() if k not in ("qtype", "qtypes", "answer")} for r in rows]
        (synth / f"user_{name}.json").write_text(json.dumps(rows))
    (root / "text.txt").write_text("the red circle is on the left. the blue square is on the right. " * 40)
    return synth


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def config(data: Path, **kw) -> MiniatureConfig:
    files = {"data": str(data / "user_instruct.json"), "eval_data": str(data / "user_eval.json")}
    return MiniatureConfig(**{**files, **kw})


def test_question_kind_is_the_first_two_words():
    assert question_kind("<image>\nWhat color is the shape?") == "what color"
    assert question_kind("Is there a circle?") == "is there"
    assert question_kind("how many?") == "how many"
    assert question_kind("<image>") == "(empty)"


def test_data_stage_writes_the_splits_blind_copies_and_kinds(user_data, tmp_path):
    before = digest(user_data)
    out = prepare_user_data(config(user_data, val_fraction=0.2, batch_size=4), tmp_path / "data")
    assert digest(user_data) == before  # the inputs are only read
    rows = {n: json.loads((out / f"{n}.json").read_text()) for n in ("instruct", "val", "eval", "pretrain")}
    source = json.loads((user_data / "user_instruct.json").read_text())
    assert len(rows["instruct"]) + len(rows["val"]) == len(source)
    train_images = {r["image"] for r in rows["instruct"]}
    assert train_images.isdisjoint(r["image"] for r in rows["val"])  # split by image
    assert all(Path(r["image"]).is_absolute() and Path(r["image"]).is_file() for r in rows["eval"])
    assert rows["pretrain"] == rows["instruct"]  # no --pretrain-data: the connector stage trains on questions
    for r in rows["eval"]:  # the first-words rule, recomputed independently
        question = r["conversations"][0]["value"].replace("<image>", "").split()
        assert r["qtype"] == " ".join(w.strip("?,.").lower() for w in question[:2])
        assert r["answer"] == r["conversations"][1]["value"]
    for r in rows["instruct"]:
        assert len(r["qtypes"]) == len(r["conversations"]) // 2
    for name in ("instruct", "val", "eval"):
        blind_rows = json.loads((out / f"{name}_blind.json").read_text())
        assert len(blind_rows) == len(rows[name])
        assert all("image" not in r and "<image>" not in json.dumps(r) for r in blind_rows)


def test_given_kinds_are_kept(user_data, tmp_path):
    cfg = MiniatureConfig(data=str(user_data / "instruct.json"), eval_data=str(user_data / "eval.json"),
                          val_data=str(user_data / "val.json"), batch_size=4)  # fmt: skip
    out = prepare_user_data(cfg, tmp_path / "data")
    given = {r["id"]: r["qtype"] for r in json.loads((user_data / "eval.json").read_text())}
    assert {r["id"]: r["qtype"] for r in json.loads((out / "eval.json").read_text())} == given


def test_split_by_image_keeps_an_images_questions_together():
    rows = [{"image": f"{i % 5}.png", "id": i} for i in range(20)]
    train, val = split_by_image(rows, 0.4, seed=0, source="x")
    assert len({r["image"] for r in val}) == 2 and {r["image"] for r in train}.isdisjoint(
        r["image"] for r in val
    )
    assert split_by_image(rows, 0.4, seed=0, source="x") == (train, val)  # seeded
    assert blind({"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nq?"}]}) == {
        "conversations": [{"from": "human", "value": "q?"}]
    }


def _broken(user_data: Path, tmp_path: Path, change) -> Path:
    rows = json.loads((user_data / "user_instruct.json").read_text())
    for r in rows:
        r["image"] = str(user_data / r["image"])
    change(rows)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("no answer", "without an answer"),
        ("bad image", "unreadable image"),
        ("too small", "the study needs"),
        ("no eval", "--data needs --eval-data"),
        ("val without data", "--val-data need(s) --data"),
        ("template", "unknown template 'alpaca'"),
    ],
)
def test_bad_data_is_one_line_exit_2_before_anything_trains(user_data, tmp_path, capsys, case, message):
    eval_file = str(user_data / "user_eval.json")
    data = str(user_data / "user_instruct.json")
    extra: list[str] = []
    if case == "no answer":
        data = str(_broken(user_data, tmp_path, lambda rows: rows[3]["conversations"][1].update(value=" ")))
    elif case == "bad image":
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"not a png")
        data = str(_broken(user_data, tmp_path, lambda rows: rows[5].update(image=str(bad))))
    elif case == "too small":
        data = str(_broken(user_data, tmp_path, lambda rows: rows.__delitem__(slice(6, None))))
    elif case == "template":
        extra = ["--template", "alpaca"]
    argv = ["study", "--out", str(tmp_path / "out"), "--smoke", "--seeds", "1"]
    if case == "val without data":
        argv += ["--val-data", eval_file]
    elif case == "no eval":
        argv += ["--data", data]
    else:
        argv += ["--data", data, "--eval-data", eval_file, *extra]
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not any((tmp_path / "out").rglob("sweep"))  # nothing trained


@pytest.fixture(scope="module")
def study(user_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    argv = ["study", "--out", str(out), "--smoke", "--seeds", "2", "--pick-once", "--lr-factors", "1,3",
            "--regimes", "ln,full,connector", "--data", str(user_data / "user_instruct.json"),
            "--eval-data", str(user_data / "user_eval.json"), "--val-fraction", "0.3",
            "--text-eval", str(user_data.parent / "text.txt")]  # fmt: skip
    assert cli.main(argv) == 0
    return out, json.loads((out / "study.json").read_text())


def test_a_study_on_user_data_runs_end_to_end(study):
    out, record = study
    assert set(record["accuracy"]) == {"majority", "blind", "pretrained", "ln", "full", "connector"}
    assert set(record["goals"]) == {"full_over_majority", "ln_near_full", "above_blind"}
    seeds = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    kinds = seeds[0]["baselines"]["majority"]
    assert 0 <= kinds["accuracy"] <= 1 and kinds["n"] == len(
        json.loads((out / "seed-0/data/eval.json").read_text())
    )
    md = (out / "study.md").read_text()
    assert "# The study on your data" in md and "first two words" in md and "## Forgetting" in md
    assert "| sweep |" in md and "| total |" in md  # the cost per stage, from the seeds' timings


def test_pick_once_trains_later_seeds_at_the_first_seeds_rates(study):
    out, record = study
    first = json.loads((out / "seed-0" / "results.json").read_text())
    picked = {r["regime"]: r["lr"] for r in first["rows"]}
    later = json.loads((out / "seed-1" / "settings.json").read_text())
    assert later["lr_factors"] == [1.0] and {r: later["centre_lrs"][r] for r in picked} == picked
    assert len(list((out / "seed-0" / "sweep").glob("*/lr*"))) == 6  # seed 0 swept 2 rates x 3 regimes
    assert len(list((out / "seed-1" / "sweep").glob("*/lr*"))) == 3
    assert all(a["lr"][0] == a["lr"][1] for a in record["accuracy"].values() if a["lr"][0] is not None)


def test_forgetting_is_zero_where_the_llm_is_untouched(study):
    out, record = study
    lost = json.loads((out / "seed-0" / "forgetting.json").read_text())
    assert lost["windows"] > 1 and lost["text"].endswith("text.txt")
    assert lost["regimes"]["connector"]["loss_change"]["value"] == 0.0  # only the connector was trained
    assert lost["regimes"]["full"]["loss_change"]["value"] != 0.0
    pooled = record["forgetting"]["regimes"]["full"]["loss_change"]
    assert pooled["per_seed"][0] == lost["regimes"]["full"]["loss_change"]["value"]
    assert abs(pooled["value"] - sum(pooled["per_seed"]) / 2) < 1e-12


def test_publish_writes_the_document_with_its_figures(study, tmp_path):
    from lnprobe.miniature.study import publish

    out, _ = study
    doc = publish(out, tmp_path / "docs" / "real-study.md", tmp_path / "docs" / "real-study")
    text = doc.read_text()
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert "real-study/accuracy.png" in links and len(links) > 1
    assert all((doc.parent / link).is_file() for link in links)


def test_config_refuses_data_flags_without_data():
    with pytest.raises(InputError, match="need"):
        MiniatureConfig(pretrain_data="x.json")
    with pytest.raises(InputError, match="--image-folder"):
        MiniatureConfig(data="a.json", eval_data="b.json", image_folder="/no/such/dir")
