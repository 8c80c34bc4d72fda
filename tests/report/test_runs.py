"""`lnprobe runs DIR` and `lnprobe report PATH`. The index reads each result's own saved JSON (checked
against those files), is readable by pandas, opens offline with working links, re-runs in place; the report
re-renders from the JSON alone; both refuse bad input."""

import json
import re

import pandas as pd
import pytest

from lnprobe import cli
from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.train import TrainConfig, train


@pytest.fixture(scope="module")
def tree(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("tree")
    data = write_synth(root / "data", SynthConfig(n=24, seed=0))
    run = root / "runs" / "ln"
    train(
        TrainConfig(
            model=tiny_dir,
            regime="ln",
            data=str(data / "instruct.json"),
            eval_data=str(data / "eval.json"),
            out=str(run),
            max_steps=2,
            batch_size=4,
            progress=False,
        )
    )
    sim = ["similarity", str(run), "--data", str(data / "instruct.json"), "--n", "8", "--batch-size", "4"]
    assert cli.main([*sim, "--bootstrap", "10", "--out", str(root / "probes" / "sim")]) == 0
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not lnprobe's")
    (root / "broken").mkdir()
    (root / "broken" / ".lnprobe_output.json").write_text("{not json")
    return root


def test_index_rows_match_the_saved_results(tree, capsys):
    assert cli.main(["runs", str(tree)]) == 0
    assert "wrote" in capsys.readouterr().out
    table = pd.read_csv(tree / "runs-index" / "runs.csv")
    by_path = {row["path"]: row for _, row in table.iterrows()}
    assert set(by_path) == {"data", "runs/ln", "probes/sim"}  # broken marker and plain folders skipped
    result = json.loads((tree / "runs" / "ln" / "result.json").read_text())
    ln = by_path["runs/ln"]
    assert (ln["command"], ln["regime"], ln["steps"]) == ("train", "ln", 2)
    assert ln["eval_loss"] == pytest.approx(result["eval_loss"]) and ln["lr"] == pytest.approx(2e-4)
    saved = json.loads((tree / "probes" / "sim" / "similarity.json").read_text())
    mean = saved["metrics"]["cka"]["cross_layer_mean"]
    sim = by_path["probes/sim"]
    assert sim["cka"] == pytest.approx(mean["value"]) and sim["tokens"] == "text"
    assert sim["model"] == "runs/ln" and ln["data"] == "data/instruct.json"  # relative to DIR
    assert sim["cka_ci95"] == f"[{mean['ci95'][0]:.4f}, {mean['ci95'][1]:.4f}]"


def test_the_page_opens_offline_and_its_links_resolve(tree):
    assert cli.main(["runs", str(tree)]) == 0
    index = tree / "runs-index" / "index.html"
    text = index.read_text()
    assert "<table" in text and "http" not in text  # nothing to fetch at view time
    links = re.findall(r"href='([^']+)'", text)
    assert links and all((index.parent / link).resolve().is_file() for link in links)
    assert any(link.endswith("similarity_cka.html") for link in links)


def test_a_rerun_replaces_its_own_index_and_does_not_index_it(tree):
    assert cli.main(["runs", str(tree)]) == 0
    assert cli.main(["runs", str(tree)]) == 0
    table = pd.read_csv(tree / "runs-index" / "runs.csv")
    assert "runs-index" not in set(table["path"]) and len(table) == 3


def test_bad_input(tree, tmp_path, capsys):
    def error(*args):
        assert cli.main(["runs", *map(str, args)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        return err

    assert "no such directory" in error(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "holds no lnprobe results" in error(tmp_path / "empty")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("a user's file")
    assert "was not written by `lnprobe runs`" in error(tree, "--out", mine)
    assert (mine / "keep.txt").read_text() == "a user's file"


def test_report_re_renders_a_probe_folder_from_its_json(tree, capsys):
    folder = tree / "probes" / "sim"
    assert cli.main(["report", str(folder)]) == 0
    saved = json.loads((folder / "similarity.json").read_text())
    value = saved["metrics"]["cka"]["cross_layer_mean"]["value"]
    md = (folder / "report.md").read_text()
    assert f"| cka cross-layer mean | {value:.4g} |" in md and "## Provenance" in md
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(list(folder.glob("*.png"))) >= 1


def test_report_bad_input(tree, tmp_path, capsys):
    def error(path, fragment):
        assert cli.main(["report", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, err

    error(tmp_path / "missing", "no such directory")
    error(tree / "notes", "not a folder lnprobe wrote")
    error(tree / "data", "writes no report")
    import shutil

    copy = tmp_path / "sim"
    shutil.copytree(tree / "probes" / "sim", copy)
    (copy / "similarity.json").unlink()
    error(copy, "similarity.json: missing")
    (copy / "similarity.json").write_text("[1, 2]")
    error(copy, "expected a JSON object")
