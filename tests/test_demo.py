"""The embedded default (the paper miniature) runs end to end, is deterministic, and re-runs reuse it."""

import json

from lnprobe.demo import FINETUNE, run_demo
from lnprobe.models import load


def test_demo_end_to_end(tmp_path):
    first = run_demo(tmp_path / "a", steps=8, n_eval=8)
    run_demo(tmp_path / "b", steps=8, n_eval=8)
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
    run_demo(tmp_path / "a", steps=8, n_eval=8)  # re-running (make demo twice) reuses the finished runs
    assert json.loads((tmp_path / "a" / "demo_results.json").read_text()) == rows
