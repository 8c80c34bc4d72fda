"""The embedded default (the paper miniature) runs end to end, is deterministic, and re-runs reuse it."""

import json
import subprocess
import sys
from pathlib import Path

from lnprobe.demo import FINETUNE, run_demo
from lnprobe.models import load

ROOT = Path(__file__).resolve().parent.parent


def test_demo_end_to_end(tmp_path):
    first = run_demo(tmp_path / "a", steps=8, n_eval=8, lrs=(1e-2, 3e-3))
    run_demo(tmp_path / "b", steps=8, n_eval=8, lrs=(1e-2, 3e-3))
    rows = json.loads((tmp_path / "a" / "demo_results.json").read_text())
    again = json.loads((tmp_path / "b" / "demo_results.json").read_text())
    assert [r["regime"] for r in rows] == ["pretrained (connector only)", *FINETUNE]
    for row, other in zip(rows, again, strict=True):
        assert {k: v for k, v in row.items() if k != "checkpoint"} == {
            k: v for k, v in other.items() if k != "checkpoint"
        }  # seeded: the same numbers
        assert 0.0 <= row["accuracy"] <= 1.0
    for row in rows[1:]:
        assert row["eval_loss"] < row["eval_loss_before"], row["regime"]
    by = {r["regime"]: r for r in rows}
    assert by["ln-simp"]["trainable_pct"] < by["ln"]["trainable_pct"] < by["full"]["trainable_pct"]
    assert by["ln"]["norm_grad_variance"] > 0 and by["full"]["norm_grad_variance"] > 0
    assert load(by["ln-simp"]["checkpoint"]).kind == "delta"
    report = tmp_path / "a" / "claims"
    assert (report / "report.html").is_file() and (report / "report.md").is_file()
    claims = json.loads((report / "claims.json").read_text())
    assert [c["id"] for c in claims["claims"]] == [c for c, _ in first["claims"]]
    assert "training" in claims["gradients"]["ln"]["source"]  # the runs' gradient traces were used
    run_demo(
        tmp_path / "a", steps=8, n_eval=8, lrs=(1e-2, 3e-3)
    )  # re-running (make demo twice) reuses the finished runs
    assert json.loads((tmp_path / "a" / "demo_results.json").read_text()) == rows
    _figures_from(tmp_path / "a", tmp_path / "figures")


def _figures_from(results, out):
    """Every analyses/fig_*.py script draws its figure (PNG + HTML) from the demo's saved results."""
    scripts = sorted((ROOT / "analyses").glob("fig_*.py"))
    assert len(scripts) == 5
    for script in scripts:
        done = subprocess.run(
            [sys.executable, str(script), str(results), "--out", str(out)], capture_output=True, text=True
        )
        assert done.returncode == 0, (script.name, done.stderr[-2000:])
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == ["grad_variance", "layer_similarity_cka", "ln_shift", "lr_sweep", "params_memory"]
    assert all((out / f"{stem}.html").is_file() for stem in pngs)
    missing = subprocess.run(
        [sys.executable, str(scripts[0]), str(out / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such results directory" in missing.stderr
