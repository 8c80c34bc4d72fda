"""Results trees can be moved or copied: the paths saved JSON files record are relative to the file's folder
inside the tree (absolute outside it) and read back from there (`lnprobe.io.saved_path` / `read_path`), and
every HTML figure of a tree loads the one plotly.min.js at its root by a relative path
(`lnprobe.report.page`)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from lnprobe.io import Output, read_path, results_tree, saved_path, saved_paths

SCRIPT = re.compile(r'<script[^>]*src="([^"]+)"')


@pytest.fixture(scope="module")
def claims_tree(tmp_path_factory):
    """A results tree like the demo's: data, checkpoints and training runs with gradient traces, and the
    claims over them, every path given relative to the working directory (as `--out runs/demo` does)."""
    from lnprobe.claims import ClaimsConfig, controls, run_claims
    from lnprobe.data.synth import SynthConfig, write_synth

    parent = tmp_path_factory.mktemp("tree")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(parent)
        root = Path("demo")
        data = write_synth(root / "data", SynthConfig(n=30, seed=3)) / "instruct.json"
        base = controls.build_base(root / "base")
        s = controls.build_scenario(base, root / "holds", holds=True)
        for run in (s.ln_run, s.full_run):
            _as_training_run(run)
        config = ClaimsConfig(
            base=str(base), ln=str(s.ln), full=str(s.full), data=str(data), out=str(root / "claims"),
            ln_runs=(str(s.ln_run),), full_runs=(str(s.full_run),), n=8, batch_size=4, bootstrap=20,
            progress=False,
        )  # fmt: skip
        with results_tree(root):  # what the demo's pipeline does around its stages
            run_claims(config)
    return parent / "demo"


def scripts(html: Path) -> list[str]:
    return SCRIPT.findall(html.read_text())


def assert_one_plotly(root: Path) -> None:
    """Exactly one plotly.min.js in the tree, at its root, and every page's script resolves to it."""
    assert [p.relative_to(root) for p in root.rglob("plotly.min.js")] == [Path("plotly.min.js")]
    pages = [p for p in root.rglob("*.html") if "Plotly.newPlot" in p.read_text()]  # not report.html
    assert pages
    for page in pages:
        srcs = scripts(page)
        assert len(srcs) == 1 and not srcs[0].startswith(("http", "/")), (page, srcs)  # offline, relative
        assert (page.parent / srcs[0]).resolve() == (root / "plotly.min.js").resolve(), (page, srcs)


def _as_training_run(run: Path) -> None:
    """Give a planted gradient trace what `train --gradvar-every` also writes: the step of each sample and
    the cumulative summary per step (`gradvar.jsonl`), as the figure script reads them."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    trace = load_file(str(run / "gradvar_trace.safetensors"))["norm_grads"]
    steps = torch.arange(trace.shape[0]) // 4 + 1  # 4 micro-batches per recorded step
    save_file({"steps": steps, "norm_grads": trace}, str(run / "gradvar_trace.safetensors"))
    rows = [
        {"step": int(k), "groups": {"norms.all": {"variance": float(trace[steps <= k].var(0).mean()),
                                                  "numel": trace.shape[1]}}}
        for k in steps.unique()
    ]  # fmt: skip
    (run / "gradvar.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_saved_paths_are_relative_inside_the_tree_absolute_outside(tmp_path):
    tree, outside = tmp_path / "tree", tmp_path / "elsewhere" / "ckpt"
    (tree / "sweep" / "ln").mkdir(parents=True)
    outside.mkdir(parents=True)
    with results_tree(tree):
        folder = tree / "claims"
        assert saved_path(tree / "sweep" / "ln", folder) == "../sweep/ln"
        assert saved_path(folder, folder) == "."
        assert saved_path(outside, folder) == str(outside)  # absolute: survives moving the tree
        assert saved_path("org/hub-model", folder) == "org/hub-model"  # not a local path: as given
        assert saved_path(None, folder) is None
        assert saved_paths({"a": [str(outside), None]}, folder) == {"a": [str(outside), None]}
    # outside any tree the JSON file's folder is its own tree
    assert saved_path(tree / "sweep" / "ln", tree) == "sweep/ln"
    assert saved_path(tree / "sweep" / "ln", tree / "claims") == str(tree / "sweep" / "ln")


def test_staged_outputs_record_their_final_places(tmp_path):
    """Inside a staged output (built in a temporary sibling), paths are relative between final places."""
    run = tmp_path / "claims-out"
    with Output(run, "claims").build() as tmp:
        inner = tmp / "probes" / "similarity-ln"
        assert saved_path(inner, inner) == "."
        assert saved_path(tmp / "probes" / "gradvar-ln", inner) == "../gradvar-ln"
        assert saved_path(run / "probes", inner) == ".."


def test_read_path_from_the_files_folder_and_old_files_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "tree" / "claims").mkdir(parents=True)
    (tmp_path / "tree" / "run").mkdir()
    folder = tmp_path / "tree" / "claims"
    assert read_path("../run", folder).resolve() == (tmp_path / "tree" / "run").resolve()
    assert read_path(str(tmp_path / "x"), folder) == tmp_path / "x"  # absolute: as is
    monkeypatch.chdir(tmp_path)
    assert read_path("tree/run", folder) == Path("tree/run")  # written relative to the cwd (older files)


def test_pages_of_a_tree_share_one_plotly_js(tmp_path):
    """Figures written in nested folders, staged outputs among them, load the root's one plotly.min.js;
    a copy of the tree still does (offline: nothing from a CDN)."""
    from lnprobe.miniature.study import _figure
    from lnprobe.report.heatmaps import similarity_figures
    from lnprobe.report.lines import lnshift_figures

    sim = {
        "config": {"a": "m/a", "b": None, "tokens": "all"},
        "sites_a": ["layer.0", "layer.1"],
        "sites_b": ["layer.0", "layer.1"],
        "metrics": {"cka": {"matrix": [[1.0, 0.5], [0.5, 1.0]]}},
    }
    shift = {
        "config": {"ckpt": "m/ln", "base": "m/base"},
        "weights": {"model.layers.0.input_layernorm.weight": {"rel_l2": 0.1}},
        "gaps": {
            "input_norm.0.in": {"base": 1.0, "tuned": 0.5},
            "input_norm.0.out": {"base": 0.9, "tuned": 0.4},
        },
    }
    study = {"accuracy": {"ln": {"value": 0.9, "ci95": [0.8, 1.0]}, "full": {"value": 0.95, "ci95": None}}}
    root = tmp_path / "study"
    root.mkdir()
    with results_tree(root):
        _figure(study, root)
        with Output(root / "seed-0" / "claims", "claims").build() as claims:
            for name in ("similarity-ln", "similarity-full"):
                with Output(claims / "probes" / name, "similarity").build() as out:
                    similarity_figures(sim, out)
            with Output(claims / "probes" / "lnshift-ln", "lnshift").build() as out:
                lnshift_figures(shift, out)
    assert_one_plotly(root)
    assert scripts(root / "seed-0" / "claims" / "probes" / "lnshift-ln" / "lnshift.html") == [
        "../../../../plotly.min.js"
    ]
    copy = tmp_path / "moved" / "study"
    shutil.copytree(root, copy)
    assert_one_plotly(copy)
    # a probe run on its own: its --out is the root
    with Output(tmp_path / "alone", "similarity").build() as out:
        similarity_figures(sim, out)
    assert_one_plotly(tmp_path / "alone")
    assert scripts(tmp_path / "alone" / "similarity_cka.html") == ["plotly.min.js"]


def test_claims_tree_moves_and_its_figures_still_render(claims_tree, tmp_path, monkeypatch):
    """A tree holding training runs and the claims over them (as the demo's does), moved elsewhere and read
    from another working directory: the figure scripts find the claims' gradient traces and everything
    else, and the pages load the tree's one plotly.min.js."""
    import json
    import subprocess
    import sys

    moved = tmp_path / "somewhere" / "else"
    shutil.copytree(claims_tree, moved)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    record = json.loads((moved / "claims" / "claims.json").read_text())
    cfg = record["config"]
    assert cfg["ln_runs"] == ["../holds/ln-run"] and cfg["out"] == "."
    assert read_path(cfg["ln"][0], moved / "claims").resolve() == (moved / "holds" / "ln").resolve()
    assert record["gradients"]["ln"]["source"] == "../holds/ln-run/gradvar_trace.safetensors (training)"
    assert_one_plotly(moved)
    sim = json.loads((moved / "claims" / "probes" / "similarity-ln" / "similarity.json").read_text())
    assert sim["config"]["out"] == "." and sim["config"]["a"] == "../../../holds/ln"
    analyses = Path(__file__).resolve().parents[1] / "analyses"
    for script in ("fig_grad_variance.py", "fig_layer_similarity.py", "fig_ln_shift.py"):
        done = subprocess.run(
            [sys.executable, str(analyses / script), str(moved), "--out", "figures"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(analyses)},
        )
        assert done.returncode == 0, (script, done.stderr[-2000:])
    figures = elsewhere / "figures"
    pngs = sorted(p.name for p in figures.glob("*.png"))
    assert pngs == ["grad_variance.png", "layer_similarity_cka.png", "ln_shift.png"]
    assert_one_plotly(figures)
    page = (figures / "grad_variance.html").read_text()
    assert "ln-run" in page and "full-run" in page  # the two runs the claims used
