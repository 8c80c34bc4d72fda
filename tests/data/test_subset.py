"""`lnprobe data subset`: equal records or equal tokens per kind, seeded, kinds from fields or file names."""

import json

import pytest

from lnprobe import cli
from lnprobe.data.llava import read_records
from lnprobe.data.synth import SynthConfig, write_synth


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("subset") / "data", SynthConfig(n=40, seed=2))


def test_equal_records_per_kind_seeded(synth, tmp_path):
    out = tmp_path / "sub.json"
    assert (
        cli.main(
            ["data", "subset", "--data", str(synth / "instruct.json"), "--out", str(out), "--per-kind", "5"]
        )
        == 0
    )
    rows = json.loads(out.read_text())
    kinds = [r["kind"] for r in rows]
    assert {k: kinds.count(k) for k in set(kinds)} == {"conversation": 5, "detail": 5, "reasoning": 5}
    assert len(read_records(out)) == 15  # valid LLaVA data
    again = tmp_path / "again.json"
    cli.main(
        ["data", "subset", "--data", str(synth / "instruct.json"), "--out", str(again), "--per-kind", "5"]
    )
    assert json.loads(again.read_text()) == rows  # same seed, same subset
    other = tmp_path / "other.json"
    cli.main(
        [
            "data",
            "subset",
            "--data",
            str(synth / "instruct.json"),
            "--out",
            str(other),
            "--per-kind",
            "5",
            "--seed",
            "1",
        ]
    )
    assert json.loads(other.read_text()) != rows
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["kinds"]["detail"]["records"] == 5 and meta["provenance"]["seed"] == 0


def test_equal_tokens_per_kind_and_kinds_from_file_names(synth, tmp_path, tiny_dir):
    records = json.loads((synth / "instruct.json").read_text())
    parts = {}
    for kind in ("conversation", "detail"):
        parts[kind] = tmp_path / f"{kind}_part.json"
        parts[kind].write_text(
            json.dumps([{k: v for k, v in r.items() if k != "kind"} for r in records if r["kind"] == kind])
        )
    out = tmp_path / "tok.json"
    argv = ["data", "subset", "--data", str(parts["conversation"]), "--data", str(parts["detail"])]
    assert cli.main([*argv, "--out", str(out), "--tokens-per-kind", "100", "--model", tiny_dir]) == 0
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert set(meta["kinds"]) == {"conversation_part", "detail_part"}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rows = json.loads(out.read_text())
    for kind, s in meta["kinds"].items():
        assert s["tokens"] >= 100  # reached, and
        picked = [r for r in rows if r in json.loads((tmp_path / f"{kind}.json").read_text())]
        counted = sum(
            len(
                tok(
                    "\n".join(t["value"].replace("<image>", "") for t in r["conversations"]),
                    add_special_tokens=False,
                )["input_ids"]
            )
            for r in picked
        )
        assert counted == s["tokens"]
        last = picked[-1]
        last_tokens = len(
            tok(
                "\n".join(t["value"].replace("<image>", "") for t in last["conversations"]),
                add_special_tokens=False,
            )["input_ids"]
        )
        assert s["tokens"] - last_tokens < 100  # minimal: without the last record the total falls short


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "exactly one of"),
        (["--per-kind", "1000"], "fewer than --per-kind"),
        (["--tokens-per-kind", "10"], "needs --model"),
        (["--per-kind", "0"], ">= 1"),
    ],
)
def test_bad_input(synth, tmp_path, capsys, extra, message):
    out = tmp_path / "x.json"
    assert (
        cli.main(["data", "subset", "--data", str(synth / "instruct.json"), "--out", str(out), *extra]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
