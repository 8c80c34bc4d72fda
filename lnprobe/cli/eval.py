"""`lnprobe eval`: benchmark evaluation on the command line, generated from `EvalConfig`."""

from __future__ import annotations

from pathlib import Path

from lnprobe.cli.core import app, console
from lnprobe.cli.options import config_command
from lnprobe.eval.config import EvalConfig


@app.command("eval")
@config_command(EvalConfig, defaults={"ckpt": None, "bench": "", "data": "", "out": "runs/eval"})
def eval_command(cfg: EvalConfig) -> None:
    """Answer a benchmark greedily and score it as its official tools do (per-item predictions kept)."""
    from lnprobe.eval.bench import BENCHES
    from lnprobe.eval.run import run_eval

    record = run_eval(cfg)
    scores = record["scores"]
    shown = ", ".join(f"{k} {_fmt(scores[k])}" for k in BENCHES.get(cfg.bench).headline)
    odd = {k: scores[k] for k in ("unclear", "unparsed") if scores.get(k)}
    notes = "".join(f", {v} {k}" for k, v in odd.items())
    console.print(f"{cfg.bench}: {shown} ({len(record['items'])} items{notes})")
    if odd:
        where = Path(cfg.out) / "results.json"
        console.print(f"  {sum(odd.values())} answers said neither yes nor no (their texts: {where})")
    console.print(f"wrote {Path(cfg.out)}/results.json")


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
