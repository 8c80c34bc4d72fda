"""Dataset manifests: every shipped one is schema-valid; `lnprobe data verify` reports every problem."""

import hashlib

import pytest
import yaml

from lnprobe import cli
from lnprobe.data.manifest import ROOT, read_manifest, verify
from lnprobe.errors import InputError

SHIPPED = sorted(ROOT.glob("*.yaml"))


def test_the_issue_datasets_are_all_shipped():
    names = {p.stem for p in SHIPPED}
    assert {
        "cc3m_595k",
        "llava_instruct_80k",
        "llava_v1_5_mix665k",
        "mme",
        "vqav2_val",
        "coco_karpathy_test",
        "flickr30k_karpathy_test",
        "pope",
    } <= names
    parts = {f.path for f in read_manifest("llava_instruct_80k").files}
    assert {"conversation_58k.json", "detail_23k.json", "complex_reasoning_77k.json"} <= parts
    assert [f.path for f in read_manifest("pope").files][:3] == [
        f"coco_pope_{s}.json" for s in ("random", "popular", "adversarial")
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_manifest_is_valid(path):
    m = read_manifest(path)
    assert m.source.startswith("https://") and m.license and m.reader
    assert len({f.path for f in m.files}) == len(m.files)


def _manifest(tmp_path, files, **extra):
    data = {
        "name": "toy",
        "description": "d",
        "source": "https://example.org",
        "license": "l",
        "format": "f",
        "reader": "r",
        "files": files,
        **extra,
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_verify_reports_every_problem(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "good.json").write_bytes(b"hello")
    (root / "bad.json").write_bytes(b"world")
    (root / "short.json").write_bytes(b"12")
    (root / "unknown.json").write_bytes(b"x")
    digest = hashlib.sha256(b"hello").hexdigest()
    files = [
        {"path": "good.json", "size": 5, "sha256": digest},
        {"path": "bad.json", "size": 5, "sha256": digest},
        {"path": "short.json", "size": 3, "sha256": None},
        {"path": "unknown.json", "size": None, "sha256": None},
        {"path": "gone.json", "size": None, "sha256": None},
    ]
    path = _manifest(tmp_path, files)
    rows = {r["path"]: r["status"] for r in verify(read_manifest(path), root, progress=False)}
    assert rows == {
        "good.json": "ok",
        "bad.json": "hash mismatch",
        "short.json": "size mismatch",
        "unknown.json": "present",
        "gone.json": "missing",
    }
    assert cli.main(["data", "verify", str(path), "--root", str(root)]) == 2
    captured = capsys.readouterr()
    assert "3 of 5 file(s) missing or mismatched" in captured.err
    for name in ("bad.json", "short.json", "gone.json"):
        assert name in captured.out  # every problem listed, not just the first
    ok = _manifest(tmp_path, files[:1] + files[3:4])
    assert cli.main(["data", "verify", str(ok), "--root", str(root)]) == 0


@pytest.mark.parametrize(
    "files, extra, message",
    [
        ([{"path": "a", "size": 1, "sha256": "abc"}], {}, "64 lowercase hex"),
        ([{"path": "a", "size": 1, "md5": "x"}], {}, "unknown field(s) md5"),
        ([{"path": "../a", "size": 1}], {}, "relative path inside"),
        ([{"path": "a", "size": -1}], {}, "'size' must be"),
        ([{"path": "a"}], {"homepage": "x"}, "unknown field(s) homepage"),
        ([], {}, "non-empty list"),
        ([{"path": "images/", "size": 3}], {}, "folder entry (images/) takes no size"),
    ],
)
def test_bad_manifests(tmp_path, capsys, files, extra, message):
    path = _manifest(tmp_path, files, **extra)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(path)
    assert cli.main(["data", "verify", str(path), "--root", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_folder_entries_must_exist_and_hold_something(tmp_path):
    root = tmp_path / "root"
    (root / "full").mkdir(parents=True)
    (root / "full" / "x.jpg").write_bytes(b"x")
    (root / "empty").mkdir()
    files = [{"path": "full/"}, {"path": "a.json"}, {"path": "empty/"}, {"path": "gone/"}]
    rows = verify(read_manifest(_manifest(tmp_path, files)), root, progress=False)
    assert [(r["path"], r["status"]) for r in rows] == [
        ("full/", "present"),
        ("a.json", "missing"),
        ("empty/", "missing"),
        ("gone/", "missing"),
    ]


def test_shipped_eval_manifests_match_the_fixture_layout(tmp_path):
    """A fixture folder written for a benchmark has every file its manifest names (MME: the subtasks the
    fixture draws), so the manifests describe what `lnprobe eval` reads."""
    from lnprobe.eval.fixtures import write_fixture

    for bench, manifest in [
        ("pope", "pope"),
        ("vqav2", "vqav2_val"),
        ("flickr30k", "flickr30k_karpathy_test"),
    ]:
        write_fixture(bench, tmp_path / bench, n=1)
        rows = verify(read_manifest(manifest), tmp_path / bench, progress=False)
        assert all(r["status"] == "present" for r in rows), rows
    write_fixture("mme", tmp_path / "mme", n=1)
    rows = verify(read_manifest("mme"), tmp_path / "mme", progress=False)
    assert {r["path"] for r in rows if r["status"] == "present"} == {
        "color/", "existence/", "scene/", "commonsense_reasoning/",
    }  # fmt: skip


def test_unknown_manifest_name_and_root(tmp_path):
    assert cli.main(["data", "verify", "nope"]) == 2
    assert cli.main(["data", "verify", "pope", "--root", str(tmp_path / "missing")]) == 2
