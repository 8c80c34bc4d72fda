"""Figure helpers: names from checkpoints, values in small heatmaps, the difference map's numbers."""

import base64
import json

import numpy as np

from lnprobe.report.heatmaps import ANNOTATE, checkpoint_label, difference_figures, similarity_figures
from lnprobe.report.lines import training_variance_figures


def test_checkpoint_labels():
    assert (
        checkpoint_label("runs/demo/sweep/ln/lr0.01-seed0/checkpoints/step-000200")
        == "ln/lr0.01-seed0 step 200"
    )
    assert checkpoint_label("llava-hf/llava-1.5-7b-hf") == "llava-1.5-7b-hf"
    assert checkpoint_label("runs/tiny") == "tiny"


def record(matrix, label, sites):
    return {
        "config": {"a": f"runs/{label}", "b": None, "label_a": label, "tokens": "text"},
        "sites_a": sites,
        "sites_b": sites,
        "metrics": {"cka": {"matrix": matrix, "cross_layer_mean": {"value": 0.5, "ci95": [0.4, 0.6]}}},
    }


def plotted_z(html_text: str) -> np.ndarray:
    """The heatmap's z values as plotly embeds them in the page."""
    start = html_text.index('"z":') + 4
    value, _ = json.JSONDecoder().raw_decode(html_text[start:])
    if isinstance(value, dict):  # plotly's binary form: {"dtype", "bdata" (base64), "shape"}
        shape = tuple(int(x) for x in str(value["shape"]).split(","))
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.array(value, dtype=float)


def test_difference_map_is_the_first_minus_the_second(tmp_path):
    sites = [f"layer.{i}" for i in range(3)]
    a = np.array([[1.0, 0.6, 0.2], [0.6, 1.0, 0.5], [0.2, 0.5, 1.0]])
    b = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.7], [0.8, 0.7, 1.0]])
    png, html = difference_figures(
        record(a.tolist(), "ln", sites), record(b.tolist(), "full", sites), tmp_path
    )
    text = html.read_text()
    assert png.is_file() and "ln minus full" in text
    assert np.allclose(plotted_z(text), a - b)
    assert f"cross-layer mean difference {(a - b)[~np.eye(3, dtype=bool)].mean():+.3f}" in text
    assert '"texttemplate":"%{z:.2f}"' in text.replace(" ", "")  # values in the cells of a small map
    other = record(np.eye(4).tolist(), "full", [f"layer.{i}" for i in range(4)])
    assert difference_figures(record(a.tolist(), "ln", sites), other, tmp_path / "x") == []  # shapes differ


def test_large_heatmaps_carry_no_cell_values(tmp_path):
    n = ANNOTATE + 1
    sites = [f"layer.{i}" for i in range(n)]
    _, html = similarity_figures(record(np.eye(n).tolist(), "ln", sites), tmp_path)[:2]
    text = html.read_text()
    assert "texttemplate" not in text and "cka: ln x ln" in text


def test_training_variance_lines_average_the_norm_groups(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {"step": 1, "groups": {}},
        {
            "step": 5,
            "groups": {"norms.0": {"variance": 1.0}, "norms.1": {"variance": 3.0}, "attn": {"variance": 9.0}},
        },
    ]
    (run / "gradvar.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    png, html = training_variance_figures({"ln": str(run), "none": str(tmp_path / "missing")}, tmp_path)
    text = html.read_text()
    assert (
        png.is_file()
        and '"name":"ln"' in text.replace(" ", "")
        and '"name":"none"' not in text.replace(" ", "")
    )
    assert '"y":[2.0]' in text.replace(" ", "")  # (1 + 3) / 2 at step 5; the attention group left out
    assert training_variance_figures({"x": str(tmp_path / "missing")}, tmp_path / "y") == []


def test_lnshift_panels_have_their_own_legends_and_base_lines_are_dashed(tmp_path):
    from lnprobe.report.lines import lnshift_figures

    layers = range(2)
    rec = {
        "config": {"ckpt": "runs/ln", "base": "runs/base"},
        "weights": {f"model.layers.{i}.input_layernorm.weight": {"rel_l2": 0.1 * i} for i in layers},
        "gaps": {f"input_norm.{i}.{io}": {"base": 1.0, "tuned": 1.0} for i in layers for io in ("in", "out")},
    }
    _, html = lnshift_figures(rec, tmp_path)
    text = html.read_text().replace(" ", "")
    assert '"legend2":{' in text and text.count('"legend":"legend2"') == 4  # the four gap lines
    assert text.count('"dash":"dash"') == 2  # base, norm in and out
