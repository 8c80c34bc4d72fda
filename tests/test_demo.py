"""The embedded default runs end to end and is deterministic."""

import json
import math

from lnprobe.demo import run_demo
from lnprobe.regimes import REGIMES


def test_demo_end_to_end(tmp_path):
    run_demo(tmp_path / "a", steps=3)
    run_demo(tmp_path / "b", steps=3)
    rows = json.loads((tmp_path / "a" / "demo_results.json").read_text())
    assert [r["regime"] for r in rows] == REGIMES.names()
    for row in rows:
        assert math.isfinite(row["loss_after"]) and row["loss_after"] < row["loss_before"]
    assert rows == json.loads((tmp_path / "b" / "demo_results.json").read_text())  # seeded: same numbers
    assert (tmp_path / "a" / "ln-simp-delta" / "lnprobe_delta.json").is_file()
