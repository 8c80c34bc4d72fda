"""The forgetting probe (`lnprobe forgetting BASE TUNED --text FILE --out DIR`): text loss and next-token
accuracy before and after finetuning, against an independent formula, known answers (identical models:
exactly 0; a planted norm change: a loss rise whose interval excludes 0; a change outside the LLM: exactly
0 on text), scipy's paired t interval, the windows' rules, bad input, and the real SmolLM2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lnprobe import cli
from lnprobe.probes.forgetting.run import (
    document_windows,
    python_docs_text,
    read_text_spec,
    text_windows,
)
from lnprobe.probes.forgetting.stats import compare, window_losses

SENTENCES = (
    "The red circle sits above the small blue square.",
    "A large green triangle is next to the yellow circle there.",
    "How many shapes does this picture show, and where is the tiny one?",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six English records, one of 3 words and the others of 3 to 12 sentences (the miniature's
    text.jsonl format)."""
    path = tmp_path_factory.mktemp("forgetting") / "text.jsonl"
    texts = [" ".join(SENTENCES[i % 3] for i in range(k)) for k in (12, 0, 8, 5, 12, 3)]
    texts[1] = "a red circle"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def _copy_with(tiny_dir: str, out: Path, change) -> str:
    """A copy of the tiny checkpoint with `change(model)` applied to its weights."""
    from lnprobe.models import load
    from lnprobe.models.hf import quiet_transformers, save_quietly

    loaded = load(tiny_dir)
    with torch.no_grad():
        change(loaded.model)
    with quiet_transformers():
        save_quietly(loaded.model, out)
        loaded.processor.save_pretrained(out)
    shutil.copy(Path(tiny_dir) / "lnprobe_config.json", out / "lnprobe_config.json")
    return str(out)


@pytest.fixture(scope="module")
def planted(tiny_dir, tmp_path_factory) -> dict[str, str]:
    """`norm`: one decoder norm weight x3 (layer 1's input norm); `connector`: only the multi-modal
    projector changed (x3)."""
    root = tmp_path_factory.mktemp("planted")

    def norm(model):
        model.get_submodule("model.language_model.layers.1.input_layernorm").weight.mul_(3)

    def connector(model):
        projector = model.get_submodule("model.multi_modal_projector")
        for p in projector.parameters():
            p.mul_(3)

    return {
        "norm": _copy_with(tiny_dir, root / "norm", norm),
        "connector": _copy_with(tiny_dir, root / "conn", connector),
    }


def _run(base: str, tuned: str, text, out: Path, *extra) -> dict:
    argv = ["forgetting", base, tuned, "--text", str(text), "--out", str(out), "--no-progress", *extra]
    assert cli.main([str(a) for a in argv]) == 0
    return json.loads((out / "forgetting.json").read_text())


# -- the loss against an independent formula ----------------------------------------------------------------


def test_loss_is_cross_entropy_and_padding_changes_nothing(tiny):
    """Each window's loss and accuracy, from a padded batch of mixed lengths, equal torch's cross entropy
    and argmax on that window's logits alone."""
    model, _ = tiny
    model.eval()
    gen = torch.Generator().manual_seed(0)
    windows = [torch.randint(5, 500, (n,), generator=gen).tolist() for n in (5, 17, 2, 11, 17, 3)]
    loss, acc = window_losses(model, windows, batch_size=4, pad_id=3)
    assert loss.shape == acc.shape == (6,)
    for i, w in enumerate(windows):
        ids = torch.tensor([w])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float()  # [t, vocab]
        expected = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:]).item()
        hits = (logits[:-1].argmax(-1) == ids[0, 1:]).double().mean().item()
        assert loss[i] == pytest.approx(expected, abs=1e-5)
        assert acc[i] == pytest.approx(hits, abs=1e-12)
    alone = [window_losses(model, [w], 1, 3)[0][0] for w in windows]
    np.testing.assert_allclose(loss, alone, atol=1e-5)
    with pytest.raises(ValueError):
        window_losses(model, [[7]], 1, 3)


# -- the statistics against scipy ---------------------------------------------------------------------------


def test_paired_t_interval_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    base, acc0 = rng.normal(3, 0.5, 40), rng.uniform(0.3, 0.6, 40)
    tuned, acc1 = base + rng.normal(0.1, 0.2, 40), acc0 + rng.normal(-0.02, 0.05, 40)
    out = compare(base, tuned, acc0, acc1)
    ci = stats.ttest_rel(tuned, base).confidence_interval(0.95)
    assert out["n"] == 40
    assert out["loss_change"]["value"] == pytest.approx(np.mean(tuned - base), abs=1e-12)
    assert out["loss_change"]["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-10)
    assert out["perplexity_ratio"]["value"] == pytest.approx(np.exp(np.mean(tuned - base)))
    assert out["perplexity_ratio"]["ci95"] == pytest.approx([np.exp(ci.low), np.exp(ci.high)])
    lo, hi = stats.t.interval(0.95, 39, loc=np.mean(acc1 - acc0), scale=stats.sem(acc1 - acc0))
    assert out["accuracy_change"]["ci95"] == pytest.approx([lo, hi], abs=1e-10)
    assert (out["loss_before"], out["accuracy_after"]) == pytest.approx((base.mean(), acc1.mean()))


def test_identical_inputs_give_exactly_zero():
    loss, acc = np.array([2.5, 3.1, 1.7]), np.array([0.4, 0.5, 0.25])
    out = compare(loss, loss.copy(), acc, acc.copy())
    for key in ("loss_change", "accuracy_change"):
        assert out[key] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert out["perplexity_ratio"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    one = compare(loss[:1], loss[:1] + 0.5, acc[:1], acc[:1])
    assert one["loss_change"] == {"value": 0.5, "ci95": [None, None]}


# -- windows ------------------------------------------------------------------------------------------------


def test_windows_stay_in_their_record_and_are_seeded(tiny, corpus):
    """No window crosses a record (each is a contiguous slice of one record's ids), none is longer than
    max_length, a record shorter than a window is its own window; the same seed gives the same draw."""
    _, processor = tiny
    tok = processor.tokenizer
    docs = read_text_spec(str(corpus))
    assert len(docs) == 6
    ids = tok(docs, add_special_tokens=False)["input_ids"]
    every = document_windows(tok, docs, 24, 10_000, 0)
    for w in every:
        assert 2 <= len(w.ids) <= 24
        assert w.ids == ids[w.document][w.start : w.start + len(w.ids)]
    kept = sum(len(w.ids) for w in every)  # nothing lost but a record's one-token tail
    assert sum(map(len, ids)) - len(ids) <= kept <= sum(map(len, ids))
    short = [d for d, i in enumerate(ids) if len(i) <= 24]
    assert short and all(sum(w.document == d for w in every) == 1 for d in short)
    drawn = text_windows(tok, str(corpus), 24, 5, seed=1)
    assert len(drawn) == 5 and drawn == text_windows(tok, str(corpus), 24, 5, seed=1)
    assert drawn != text_windows(tok, str(corpus), 24, 5, seed=2)
    assert all(d in [w.ids for w in every] for d in drawn)


def test_python_docs_is_english_text(tiny):
    text = python_docs_text()
    assert len(text) > 100_000
    words = text.lower().split()
    assert words.count("the") > 1000 and words.count("and") > 100
    assert read_text_spec("python-docs") == [text]
    windows = text_windows(tiny[1].tokenizer, "python-docs", 32, 7, 0)
    assert len(windows) == 7 and all(len(w) == 32 for w in windows)


def test_text_file_formats(tmp_path):
    (tmp_path / "a.txt").write_text("plain text\nover two lines")
    (tmp_path / "b.json").write_text(json.dumps([{"text": "one"}, {"text": "two"}]))
    assert read_text_spec(str(tmp_path / "a.txt")) == ["plain text\nover two lines"]
    assert read_text_spec(str(tmp_path / "b.json")) == ["one", "two"]


# -- known answers through the command ----------------------------------------------------------------------


def test_base_vs_base_is_exactly_zero(tiny_dir, corpus, tmp_path, capsys):
    record = _run(tiny_dir, tiny_dir, corpus, tmp_path / "o", "--max-length", "16")
    s = record["summary"]
    assert s["loss_change"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert s["accuracy_change"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert record["per_window"]["base_loss"] == record["per_window"]["tuned_loss"]
    assert s["n"] == len(record["windows"]) == len(record["per_window"]["base_loss"]) > 2
    assert 4 < s["loss_before"] < 8  # a random tiny model: near log(512) = 6.24
    assert record["provenance"]["seed"] == 0 and record["config"]["max_length"] == 16
    out = capsys.readouterr().out
    assert "text loss" in out and "nats/token (change +0.00 [0.00, 0.00])" in out


def test_a_planted_norm_change_raises_the_loss(tiny_dir, planted, tmp_path):
    s = _run(tiny_dir, planted["norm"], "python-docs", tmp_path / "o", "--n", "24", "--max-length", "32")[
        "summary"
    ]
    assert s["loss_after"] > s["loss_before"]
    lo, hi = s["loss_change"]["ci95"]
    assert 0 < lo <= s["loss_change"]["value"] <= hi
    assert s["perplexity_ratio"]["ci95"][0] > 1


def test_a_change_outside_the_llm_leaves_text_untouched(tiny_dir, planted, corpus, tmp_path):
    record = _run(tiny_dir, planted["connector"], corpus, tmp_path / "o", "--max-length", "16")
    assert record["per_window"]["base_loss"] == record["per_window"]["tuned_loss"]
    assert record["summary"]["loss_change"] == {"value": 0.0, "ci95": [0.0, 0.0]}


def test_force_replaces_its_own_output(tiny_dir, corpus, tmp_path):
    out = tmp_path / "o"
    _run(tiny_dir, tiny_dir, corpus, out, "--n", "2")
    assert cli.main(["forgetting", tiny_dir, tiny_dir, "--text", str(corpus), "--out", str(out)]) == 2
    assert _run(tiny_dir, tiny_dir, corpus, out, "--n", "3", "--force")["summary"]["n"] == 3


# -- bad input: one line, exit 2, nothing written ------------------------------------------------------------


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory) -> str:
    from lnprobe.models import TinyConfig, save_tiny

    return str(save_tiny(tmp_path_factory.mktemp("other") / "tiny300", TinyConfig(seed=0, vocab_size=300)))


def _fails(argv: list, capfd, root: Path, fragment: str) -> None:
    before = sorted(root.rglob("*"))
    code = cli.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("lnprobe: error: "), err
    assert "Traceback" not in out + err
    assert fragment in lines[0], lines[0]
    assert sorted(root.rglob("*")) == before


def test_bad_input(tiny_dir, other_vocab, corpus, tmp_path, capfd):
    out = tmp_path / "out"
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "one.txt").write_text("a")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"words": "no text field"}\n')
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.txt").write_text("keep me")
    cases = [
        ([tiny_dir, tiny_dir, "--text", tmp_path / "missing.txt"], "missing.txt"),
        ([tiny_dir, tiny_dir, "--text", tmp_path / "empty.txt"], "no text"),
        ([tiny_dir, tiny_dir, "--text", tmp_path / "one.txt"], "fewer than 2 tokens"),
        ([tiny_dir, tiny_dir, "--text", tmp_path / "bad.jsonl"], "line 2"),
        ([tiny_dir, other_vocab, "--text", corpus], "tokenizer"),
    ]
    for argv, fragment in cases:
        _fails(["forgetting", *argv, "--out", out, "--no-progress"], capfd, tmp_path, fragment)
    line = [tiny_dir, tiny_dir, "--text", corpus, "--out", tmp_path / "foreign"]
    _fails(["forgetting", *line], capfd, tmp_path, "already exists")
    _fails(["forgetting", *line, "--force"], capfd, tmp_path, "not written by")


def test_mismatched_tokenizers_name_both_models(tiny_dir, other_vocab, corpus, tmp_path, capfd):
    code = cli.main(
        ["forgetting", tiny_dir, other_vocab, "--text", str(corpus), "--out", str(tmp_path / "o")]
    )
    err = capfd.readouterr().err
    assert code == 2 and tiny_dir in err and other_vocab in err
    assert not (tmp_path / "o").exists()


# -- a real LLM ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_on_python_docs(smollm2):
    """SmolLM2-135M-Instruct on 8 windows of 64 tokens of Python's documentation: a plausible English
    text loss for a 135M LM (2.9 nats/token measured on 16 x 128), and exactly 0 change against itself."""
    _, loaded = smollm2
    tok = getattr(loaded.processor, "tokenizer", loaded.processor)
    windows = text_windows(tok, "python-docs", 64, 8, 0)
    assert len(windows) == 8 and all(len(w) == 64 for w in windows)
    loss, acc = window_losses(loaded.model, windows, 4, tok.pad_token_id)
    again = window_losses(loaded.model, windows, 4, tok.pad_token_id)
    s = compare(loss, again[0], acc, again[1])
    assert 1.5 < s["loss_before"] < 4.5, s
    assert 0.2 < s["accuracy_before"] < 0.8, s
    assert s["loss_change"] == {"value": 0.0, "ci95": [0.0, 0.0]}
