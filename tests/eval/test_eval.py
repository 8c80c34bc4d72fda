"""`lnprobe eval`: readers of the official formats, prompts, batched greedy generation, scoring plumbing,
outputs, and bad input."""

import json
import shutil

import pytest
import torch
from PIL import Image

from lnprobe import cli
from lnprobe.data.llava import Encoder
from lnprobe.data.templates import VICUNA_SYSTEM
from lnprobe.errors import InputError
from lnprobe.eval import run as eval_run
from lnprobe.eval.bench import BENCHES
from lnprobe.eval.fixtures import write_fixture
from lnprobe.eval.generate import Prompt, generate
from lnprobe.eval.run import EvalConfig, prepare, run_eval
from lnprobe.models import load


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)


def test_pope_reader_on_a_hand_written_file(tmp_path):
    recs = [
        {
            "question_id": 7,
            "image": "COCO_val2014_000000000042.jpg",
            "text": "Is there a cat?",
            "label": "no",
        },
        {
            "question_id": 8,
            "image": "COCO_val2014_000000000042.jpg",
            "text": "Is there a dog?",
            "label": "yes",
        },
    ]
    (tmp_path / "coco_pope_popular.json").write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    items = BENCHES.get("pope").read(tmp_path)
    assert [(it.id, it.question, it.reference) for it in items] == [
        ("popular/7", "Is there a cat?", "no"),
        ("popular/8", "Is there a dog?", "yes"),
    ]
    assert BENCHES.get("pope").images(tmp_path) == tmp_path / "val2014"


def test_mme_reader_both_layouts(tmp_path):
    _img(tmp_path / "count" / "0001.jpg")
    (tmp_path / "count" / "0001.txt").write_text(
        "Are there two dogs? Please answer yes or no.\tNo\nOne?\tYes\n"
    )
    _img(tmp_path / "artwork" / "images" / "10002.png")
    (tmp_path / "artwork" / "questions_answers_YN").mkdir()
    (tmp_path / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Is it by Monet?\tYes\nBy Dali?\tNo"
    )
    items = BENCHES.get("mme").read(tmp_path)
    assert [(it.image, it.question, it.reference, it.meta["subtask"]) for it in items] == [
        ("count/0001.jpg", "Are there two dogs? Please answer yes or no.", "No", "count"),
        ("count/0001.jpg", "One?", "Yes", "count"),
        ("artwork/images/10002.png", "Is it by Monet?", "Yes", "artwork"),
        ("artwork/images/10002.png", "By Dali?", "No", "artwork"),
    ]


def test_vqav2_and_karpathy_readers_on_hand_written_files(tmp_path):
    q = {"data_subtype": "val2014", "questions": [{"image_id": 42, "question": "What?", "question_id": 420}]}
    a = {"annotations": [{"question_id": 420, "answer_type": "other", "answers": [{"answer": "x"}] * 10}]}
    (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(q))
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(a))
    [item] = BENCHES.get("vqav2").read(tmp_path)
    assert item.image == "COCO_val2014_000000000042.jpg" and item.reference == ["x"] * 10
    assert item.meta == {"question_id": 420, "answer_type": "other"}
    images = [
        {
            "filepath": "val2014",
            "filename": "a.jpg",
            "split": "test",
            "cocoid": 5,
            "sentences": [{"raw": "A b."}],
        },
        {
            "filepath": "train2014",
            "filename": "b.jpg",
            "split": "train",
            "cocoid": 6,
            "sentences": [{"raw": "c"}],
        },
    ]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    [cap] = BENCHES.get("coco").read(tmp_path)
    assert (cap.id, cap.image, cap.reference) == ("5", "val2014/a.jpg", ["A b."])


@pytest.mark.parametrize(
    ("bench", "other", "message"),
    [
        ("pope", "vqav2", "no POPE file"),
        ("vqav2", "pope", "missing VQAv2 file"),
        ("mme", "coco", "not an MME release folder"),
        ("coco", "flickr30k", "missing dataset_coco.json"),
        ("flickr30k", "mme", "missing dataset_flickr30k.json"),
    ],
)
def test_files_of_another_benchmark_are_refused(tmp_path, bench, other, message):
    write_fixture(other, tmp_path / "d", n=2)
    with pytest.raises(InputError, match=message):
        BENCHES.get(bench).read(tmp_path / "d")


def test_wrong_content_under_the_right_names(tmp_path):
    write_fixture("vqav2", tmp_path / "v", n=2)
    q, a = (
        tmp_path / "v" / "v2_OpenEnded_mscoco_val2014_questions.json",
        tmp_path / "v" / "v2_mscoco_val2014_annotations.json",
    )
    q.write_bytes(a.read_bytes())  # annotations saved under the questions' name
    with pytest.raises(InputError, match="not a VQA questions file"):
        BENCHES.get("vqav2").read(tmp_path / "v")
    write_fixture("flickr30k", tmp_path / "f", n=2)
    shutil.move(tmp_path / "f" / "dataset_flickr30k.json", tmp_path / "f" / "dataset_coco.json")
    with pytest.raises(InputError, match="holds dataset 'flickr30k', not 'coco'"):
        BENCHES.get("coco").read(tmp_path / "f")
    write_fixture("pope", tmp_path / "p", n=2)
    (tmp_path / "p" / "coco_pope_random.json").write_text(
        '{"question_id": 1, "image": "x.jpg", "text": "?"}\n'
    )
    with pytest.raises(InputError, match=r"coco_pope_random.json: line 1: not a POPE record"):
        BENCHES.get("pope").read(tmp_path / "p")
    write_fixture("mme", tmp_path / "m", n=1)
    (tmp_path / "m" / "color" / "000000.txt").write_text("Is it red?\tMaybe\n")
    with pytest.raises(InputError, match=r"000000.txt: line 1: expected 'question<TAB>Yes\|No'"):
        BENCHES.get("mme").read(tmp_path / "m")


def test_prompt_ids_equal_the_processors_own_tokenisation(tiny_dir, tmp_path):
    loaded = load(tiny_dir)
    encoder = Encoder(loaded.processor, "vicuna_v1", 1 << 20)
    ids = encoder.encode_prompt("<image>\nIs there a dog?")
    text = f"{VICUNA_SYSTEM} USER: <image>\nIs there a dog? ASSISTANT:"
    ref = loaded.processor(text=text, images=Image.new("RGB", (32, 32)), return_tensors="pt")["input_ids"][0]
    assert ids == [loaded.processor.tokenizer.bos_token_id, *ref.tolist()]


def test_batched_generation_equals_one_by_one_and_starts_with_the_argmax(tiny_dir, tmp_path):
    write_fixture("pope", tmp_path / "d", n=3)
    cfg = EvalConfig(ckpt=tiny_dir, bench="pope", data=str(tmp_path / "d"), out=str(tmp_path / "o"))
    items, prompts = prepare(cfg)
    prompts[1] = Prompt(prompts[1].human.replace("?", " on the left side of the picture?"), prompts[1].image)
    loaded = load(tiny_dir)
    kw = dict(max_new_tokens=6, progress=False)
    batched = generate(loaded.model, loaded.processor, prompts, batch_size=4, **kw)
    single = generate(loaded.model, loaded.processor, prompts, batch_size=1, **kw)
    assert batched == single and len(batched) == len(items) == 9
    # the first answer token is the argmax of one plain forward pass on the prompt
    tok = loaded.processor.tokenizer
    ids = Encoder(loaded.processor, "vicuna_v1", 1 << 20).encode_prompt(prompts[1].human)
    pixels = loaded.processor.image_processor(
        images=[Image.open(prompts[1].image).convert("RGB")], return_tensors="pt"
    )
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([ids]), pixel_values=pixels["pixel_values"]).logits
    first = int(logits[0, -1].argmax())
    one = generate(loaded.model, loaded.processor, prompts[1:2], max_new_tokens=1, progress=False)[0]
    assert one == tok.decode([first], skip_special_tokens=True).strip()
    assert batched[1].startswith(one)


def _oracle(monkeypatch, answer):
    def fake(model, processor, prompts, **kw):
        return [answer(i) for i in range(len(prompts))]

    monkeypatch.setattr(eval_run, "generate", fake)


@pytest.mark.parametrize("bench", ["pope", "mme", "vqav2", "coco"])
def test_reference_answers_score_perfectly_and_shuffled_ones_do_not(tiny_dir, tmp_path, monkeypatch, bench):
    write_fixture(bench, tmp_path / "d", n=4)
    cfg = EvalConfig(
        ckpt=tiny_dir, bench=bench, data=str(tmp_path / "d"), out=str(tmp_path / "o"), progress=False
    )
    items, _ = prepare(cfg)

    def perfect(i):
        ref = items[i].reference
        if bench == "vqav2":
            return max(set(ref), key=ref.count)
        return ref[0] if isinstance(ref, list) else ref

    _oracle(monkeypatch, perfect)
    s = run_eval(cfg)["scores"]
    expected = {
        "pope": ("accuracy", 1.0),
        "mme": ("perception", 600.0),  # color, existence, scene: 100 x (1 + 1) each
        "vqav2": ("accuracy", 100.0),
        "coco": ("bleu_1", 1.0),
    }[bench]
    assert s[expected[0]] == pytest.approx(expected[1])
    if bench == "mme":
        assert s["cognition"] == pytest.approx(200.0) and s["unparsed"] == 0
    _oracle(monkeypatch, lambda i: perfect((i + 1) % len(items)))
    shifted = run_eval(EvalConfig(**{**cfg.__dict__, "force": True}))["scores"]
    assert shifted[expected[0]] < expected[1]


def test_outputs_keep_every_item_and_provenance(tiny_dir, tmp_path, monkeypatch):
    write_fixture("vqav2", tmp_path / "d", n=3)
    _oracle(monkeypatch, lambda i: ["Two", "", "blue."][i])
    out = tmp_path / "o"
    assert (
        cli.main(["eval", tiny_dir, "--bench", "vqav2", "--data", str(tmp_path / "d"), "--out", str(out)])
        == 0
    )
    record = json.loads((out / "results.json").read_text())
    assert [it["prediction"] for it in record["items"]] == ["Two", "", "blue."]
    assert record["items"][0]["normalized"] == "2" and record["scores"]["unparsed"] == 1
    assert record["provenance"]["versions"]["torch"] and record["config"]["bench"] == "vqav2"
    answers = json.loads((out / "vqav2_answers.json").read_text())
    assert [a["answer"] for a in answers] == ["Two", "", "blue."]
    assert [a["question_id"] for a in answers] == [it["question_id"] for it in record["items"]]
    assert json.loads((out / "lnprobe_config.json").read_text())["config"]["bench"] == "vqav2"


def test_mme_unparsed_answers_are_counted_and_wrong(tiny_dir, tmp_path, monkeypatch):
    write_fixture("mme", tmp_path / "d", n=2)
    _oracle(monkeypatch, lambda i: "Maybe" if i == 0 else "I think so")
    s = run_eval(EvalConfig(ckpt=tiny_dir, bench="mme", data=str(tmp_path / "d"), out=str(tmp_path / "o")))[
        "scores"
    ]
    assert s["unparsed"] == 16 and s["perception"] == 0.0


def test_the_summary_counts_answers_that_say_neither_yes_nor_no(tiny_dir, tmp_path, monkeypatch, capsys):
    write_fixture("pope", tmp_path / "d", n=2)
    _oracle(monkeypatch, lambda i: "")
    argv = ["eval", tiny_dir, "--bench", "pope", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    n = len(json.loads((tmp_path / "o" / "results.json").read_text())["items"])
    out = capsys.readouterr().out
    assert f"({n} items, {n} unclear)" in out and "said neither yes nor no" in out


def test_generation_runs_end_to_end_on_the_cli(tiny_dir, tmp_path):
    assert cli.main(["data", "fixture", "flickr30k", "--out", str(tmp_path / "d"), "--n", "3"]) == 0
    args = [
        "eval",
        tiny_dir,
        "--bench",
        "flickr30k",
        "--data",
        str(tmp_path / "d"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main([*args, "--max-new-tokens", "3", "--batch-size", "2"]) == 0
    record = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(record["items"]) == 3 and all(isinstance(it["cider_d"], float) for it in record["items"])
    assert record["items"][0]["prompt"].startswith("<image>\nProvide a one-sentence caption")


def _one_line_error(capsys, args, message):
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_bad_input(tiny_dir, tmp_path, capsys):
    write_fixture("pope", tmp_path / "d", n=2)
    base = ["eval", tiny_dir, "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")]
    _one_line_error(capsys, [*base, "--bench", "gqa"], "unknown benchmark 'gqa'")
    _one_line_error(capsys, ["eval", tiny_dir, "--bench", "pope"], "--data are required")
    _one_line_error(capsys, [*base, "--bench", "pope", "--prompt", "Answer yes or no."], "{question}")
    _one_line_error(capsys, [*base, "--bench", "pope", "--limit", "0"], "--limit 0: must be >= 1")
    (tmp_path / "d" / "val2014" / sorted(p.name for p in (tmp_path / "d" / "val2014").iterdir())[0]).unlink()
    _one_line_error(capsys, [*base, "--bench", "pope"], "images missing")
    assert not (tmp_path / "o").exists()
    (tmp_path / "o").mkdir()
    _one_line_error(capsys, [*base, "--bench", "pope", "--images", str(tmp_path)], "already exists")
    _one_line_error(capsys, ["data", "fixture", "gqa", "--out", str(tmp_path / "f")], "unknown benchmark")


def test_rescoring_saved_and_official_format_predictions(tiny_dir, tmp_path, monkeypatch, capsys):
    write_fixture("vqav2", tmp_path / "d", n=4)
    _oracle(monkeypatch, lambda i: ["blue", "1", "one", "red"][i])
    data = ["--bench", "vqav2", "--data", str(tmp_path / "d")]
    assert cli.main(["eval", tiny_dir, *data, "--out", str(tmp_path / "gen")]) == 0
    generated = json.loads((tmp_path / "gen" / "results.json").read_text())
    # lnprobe's own results.json and the official VQA results file score exactly the same
    for name, source in [("again", "results.json"), ("official", "vqav2_answers.json")]:
        args = ["eval", *data, "--predictions", str(tmp_path / "gen" / source), "--out", str(tmp_path / name)]
        assert cli.main(args) == 0
        rescored = json.loads((tmp_path / name / "results.json").read_text())
        assert rescored["scores"] == generated["scores"] and rescored["ckpt"] is None
    # JSON lines with question_id / text (LLaVA's answer files)
    lines = [
        json.dumps({"question_id": it["question_id"], "text": it["prediction"]}) for it in generated["items"]
    ]
    (tmp_path / "answers.jsonl").write_text("\n".join(lines))
    cfg = EvalConfig(
        None, "vqav2", str(tmp_path / "d"), str(tmp_path / "j"), predictions=str(tmp_path / "answers.jsonl")
    )
    assert run_eval(cfg)["scores"] == generated["scores"]
    # bad prediction files: one line each, nothing written
    (tmp_path / "short.jsonl").write_text("\n".join(lines[:3]))
    (tmp_path / "alien.jsonl").write_text("\n".join([*lines, json.dumps({"question_id": 99, "text": "x"})]))
    (tmp_path / "noid.jsonl").write_text(json.dumps({"text": "x"}))
    for name, message in [
        ("short.jsonl", "1 of 4 items have no prediction"),
        ("alien.jsonl", "1 prediction(s) match no item of the benchmark (first id 99)"),
        ("noid.jsonl", "line 1: needs an id"),
        ("gone.json", "no such predictions file"),
    ]:
        _one_line_error(
            capsys,
            ["eval", *data, "--predictions", str(tmp_path / name), "--out", str(tmp_path / "x")],
            message,
        )
    assert not (tmp_path / "x").exists()
    _one_line_error(
        capsys, ["eval", tiny_dir, *data, "--predictions", str(tmp_path / "answers.jsonl")], "not both"
    )
    _one_line_error(capsys, ["eval", *data], "not both")
    # with --limit, predictions for items beyond it are ignored
    args = [
        "eval",
        *data,
        "--predictions",
        str(tmp_path / "answers.jsonl"),
        "--limit",
        "2",
        "--out",
        str(tmp_path / "l"),
    ]
    assert cli.main(args) == 0


def test_template_defaults_to_the_training_runs(tiny_dir, tmp_path, monkeypatch):
    from lnprobe.eval.run import trained_template

    run = tmp_path / "run"
    shutil.copytree(tiny_dir, run / "checkpoints" / "step-000002")
    (run / "latest").write_text("step-000002")
    record = {"config_type": "TrainConfig", "config": {"template": "llama_2"}}
    (run / "lnprobe_config.json").write_text(json.dumps(record))
    assert trained_template(str(run)) == "llama_2"
    assert trained_template(str(run / "checkpoints" / "step-000002")) == "llama_2"
    assert trained_template(tiny_dir) == "vicuna_v1"
    seen = {}

    def fake(model, processor, prompts, template, **kw):
        seen["template"] = template
        return ["yes"] * len(prompts)

    monkeypatch.setattr(eval_run, "generate", fake)
    write_fixture("pope", tmp_path / "d", n=1)
    out = run_eval(EvalConfig(str(run), "pope", str(tmp_path / "d"), str(tmp_path / "o")))
    assert seen["template"] == "llama_2" == out["template"]
    run_eval(EvalConfig(str(run), "pope", str(tmp_path / "d"), str(tmp_path / "o2"), template="plain"))
    assert seen["template"] == "plain"
