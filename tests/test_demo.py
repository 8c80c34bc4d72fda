"""The embedded default runs end to end, improves every regime on held-out data, and is deterministic."""

import json

from lnprobe.demo import run_demo
from lnprobe.models import load
from lnprobe.regimes import REGIMES


def test_demo_end_to_end(tmp_path):
    run_demo(tmp_path / "a", steps=4)
    run_demo(tmp_path / "b", steps=4)
    rows = json.loads((tmp_path / "a" / "demo_results.json").read_text())
    again = json.loads((tmp_path / "b" / "demo_results.json").read_text())
    assert [r["regime"] for r in rows] == REGIMES.names()
    for row, other in zip(rows, again, strict=True):
        assert row["eval_after"] < row["eval_before"]
        assert {k: v for k, v in row.items() if k != "checkpoint"} == {
            k: v for k, v in other.items() if k != "checkpoint"
        }  # seeded: the same numbers
    assert load(rows[REGIMES.names().index("ln-simp")]["checkpoint"]).kind == "delta"
    run_demo(tmp_path / "a", steps=4)  # re-running (make demo twice) reuses the finished runs
    assert json.loads((tmp_path / "a" / "demo_results.json").read_text()) == rows
