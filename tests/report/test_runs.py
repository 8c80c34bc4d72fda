"""`lnprobe runs DIR` and `lnprobe report PATH`. The index reads each result's own saved JSON (checked
against those files), is readable by pandas, opens offline with working links, re-runs in place; the report
re-renders from the JSON alone; both refuse bad input."""

import json
import re
import shutil

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
    error(copy, "similarity.json: expected an object, got an array of 2 items")


GOAL = {"per_seed": [True], "all": True}
# per command: its saved file, a record that does not fit, and what the one line says is wrong
HOSTILE = {
    "similarity": ("similarity.json", {"config": "oops", "metrics": 3},
                   "config: expected an object, got the string 'oops'"),
    "gradvar": ("gradvar.json", {"kinds": {"norms": {"variance_ci95": [1]}}},
                "kinds.norms.variance_ci95: expected an array of 2 items, got an array of 1 item"),
    "lnshift": ("lnshift.json", {"summary": [1]}, "summary: expected an object, got an array of 1 item"),
    "patch": ("patch.json", {"units": [{"into_base": {"recovered": 0.5}}]},
              "units[0].into_base.recovered: expected an object, got the number 0.5"),
    "attention": ("attention.json", {"models": {"a": {"layer_mean": {"value": [1], "ci95": [3]}}}},
                  "models.a.layer_mean.ci95[0]: expected null or an array of 2 items, got the number 3"),
    "linprobe": ("linprobe.json", {"summary": {"x": "best"}}, "summary.x: expected an object, got the"),
    "eval": ("results.json", {"scores": "high"}, "scores: expected an object, got the string 'high'"),
    "forgetting": ("forgetting.json", {"summary": {"loss_change": 3}},
                   "summary.loss_change: expected an object, got the number 3"),
    "claims": ("claims.json",
               {"models": {}, "caveats": [], "provenance": {},
                "claims": [{"id": "gradient_variance", "statement": "s", "definition": "d", "tests": {},
                            "verdict": "v", "numbers": {"ln": {"variance": 1.0}}}]},
               "claims[0].numbers.ln.ci95: missing"),
    "study": ("study.json",
              {"seeds": [0], "config": {}, "accuracy": {}, "claims": {}, "regime_verdicts": {},
               "goals": {"full_accuracy": GOAL, "above_blind": GOAL, "bogus": GOAL}},
              "goals.bogus: unknown (known: "),
}  # fmt: skip


def _result(folder, command, record):
    from lnprobe.io import write_marker

    folder.mkdir(parents=True)
    write_marker(folder, command)
    name = {**HOSTILE, **RUNS}[command][0]
    (folder / name).write_text(json.dumps(record))
    return folder / name


@pytest.mark.parametrize("command", sorted(HOSTILE))
def test_report_names_the_saved_field_that_does_not_fit(command, tmp_path, capsys):
    """Every kind of result `lnprobe report` re-renders: a saved file whose fields are of the wrong kind is
    one line naming the file and the field, exit 2, and no report is written."""
    _, record, wrong = HOSTILE[command]
    path = _result(tmp_path / command, command, record)
    assert cli.main(["report", str(path.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"lnprobe: error: {path}: {wrong}"), err
    assert not list(path.parent.glob("report.*")) and not list(path.parent.glob("study.*md"))


RUNS = {  # the index reads no study.json, and of claims.json only each claim's id and verdict
    **{k: v for k, v in HOSTILE.items() if k not in ("study", "claims")},
    "claims": ("claims.json", {"claims": {"a": 1}}, "claims: expected an array, got an object of 1 item"),
    "train": ("result.json", [1], "expected an object, got an array of 1 item"),
    "demo": ("results.json", {"rows": 3}, "rows: expected an array, got the number 3"),
}


@pytest.mark.parametrize("command", sorted(RUNS))
def test_runs_names_the_saved_file_that_does_not_fit_and_still_indexes(command, tmp_path, capsys):
    """`lnprobe runs` reads the same files: one that does not fit is a warning line naming the file and
    the field, the folder's row says which file was unreadable, and the index is written (exit 0)."""
    _, record, wrong = RUNS[command]
    path = _result(tmp_path / "root" / command, command, record)
    assert cli.main(["runs", str(tmp_path / "root")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lnprobe: warning: {path}: {wrong}"), err
    row = pd.read_csv(tmp_path / "root" / "runs-index" / "runs.csv").iloc[0]
    assert (row["path"], row["unreadable"]) == (command, path.name)


def test_runs_names_unreadable_files_in_a_warning_and_a_column(tree, tmp_path, capsys):
    """A truncated result.json and a non-UTF-8 metrics.jsonl: a warning line each (file and why), the row
    names both in its `unreadable` column (CSV and page), and the index is still written."""
    run = tmp_path / "root" / "ln"
    shutil.copytree(tree / "runs" / "ln", run)
    (run / "result.json").write_text((run / "result.json").read_text()[:40])
    (run / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 2.0}\n\xff\n')
    assert cli.main(["runs", str(tmp_path / "root")]) == 0
    captured = capsys.readouterr()
    assert "1 results" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("lnprobe: warning: ") for line in err), err
    assert f"{run / 'result.json'}: malformed JSON at line" in err[0]
    assert f"{run / 'metrics.jsonl'}: not UTF-8 text (byte 25: 0xff)" in err[1]
    row = pd.read_csv(tmp_path / "root" / "runs-index" / "runs.csv").iloc[0]
    assert row["unreadable"] == "result.json, metrics.jsonl" and pd.isna(row.get("steps"))
    page = (tmp_path / "root" / "runs-index" / "index.html").read_text()
    assert ">unreadable</th>" in page and ">result.json, metrics.jsonl</td>" in page


def test_an_unfinished_run_shows_how_far_its_log_got(tree, tmp_path, capsys):
    run = tmp_path / "root" / "ln"
    shutil.copytree(tree / "runs" / "ln", run)
    (run / "result.json").unlink()  # killed, or still running
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert cli.main(["runs", str(tmp_path / "root")]) == 0
    assert capsys.readouterr().err == ""
    row = pd.read_csv(tmp_path / "root" / "runs-index" / "runs.csv").iloc[0]
    assert row["steps"] == logged[-1]["step"] == 2 and "unreadable" not in row
    assert row["last_loss"] == pytest.approx([m["loss"] for m in logged if "loss" in m][-1])


def test_a_folder_with_an_unreadable_marker_is_left_out_with_a_warning(tree, capsys):
    assert cli.main(["runs", str(tree)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    broken = tree / "broken" / ".lnprobe_output.json"
    assert err == [f"lnprobe: warning: {broken}: malformed JSON at line 1 (Expecting property name enclosed "
                   f"in double quotes); {tree / 'broken'} is left out of the index"]  # fmt: skip


def test_a_forgetting_result_is_indexed_and_re_rendered(tiny_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the red circle is on the left of the blue square. " * 30)
    out = tmp_path / "root" / "forgetting"
    argv = ["forgetting", tiny_dir, tiny_dir, "--text", str(text), "--out", str(out), "--n", "4"]
    assert cli.main([*argv, "--max-length", "16", "--no-progress"]) == 0
    saved = json.loads((out / "forgetting.json").read_text())["summary"]
    assert cli.main(["runs", str(tmp_path / "root")]) == 0
    row = pd.read_csv(tmp_path / "root" / "runs-index" / "runs.csv").iloc[0]
    assert row["command"] == "forgetting" and row["text_loss_change"] == 0.0  # the same model twice
    assert row["text_loss_before"] == pytest.approx(saved["loss_before"])
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "text loss (nats/token), change (tuned - base)" in md and "perplexity ratio" in md
