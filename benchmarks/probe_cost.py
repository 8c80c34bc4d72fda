"""Cost of the gradient-statistics callback during training, side by side in one run: the mean step time
(recorded steps included) of the same tiny-model run (ln and full regimes, grad accumulation 2) without the
callback, and with `GradVarCallback` recording every step (K=1) and every 10th step (K=10), interleaved
over `--repeats` rounds and summarised by the median round. Goal: <= 5 % at K=10.

Then the offline probe (`lnprobe gradvar`): time per batch of 8 examples for per-example gradients (one
forward, eight backward passes from the retained graph) and per-batch gradients, for the norm groups alone
and for norms + attention + MLP, each beside a plain forward+backward of the same batch (median of
`--reps`, tiny model).

    python benchmarks/probe_cost.py [--steps 60] [--repeats 3] [--reps 20] [--offline-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from timing import median_time

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.train import TrainConfig, train
from lnprobe.train.gradvar_callback import GradVarCallback


class TimedGradVar(GradVarCallback):
    """The callback with a stopwatch around its own work (a noise-free view of its cost)."""

    seconds = 0.0

    def on_micro_batch(self, *args) -> None:
        start = time.perf_counter()
        super().on_micro_batch(*args)
        self.seconds += time.perf_counter() - start

    def on_step_end(self, *args) -> None:
        start = time.perf_counter()
        super().on_step_end(*args)
        self.seconds += time.perf_counter() - start


def mean_step(data: Path, out: Path, regime: str, steps: int, callbacks) -> float:
    config = TrainConfig(
        data=str(data / "instruct.json"),
        out=str(out),
        regime=regime,
        lr=1e-3,
        max_steps=steps,
        batch_size=4,
        grad_accum=2,
        progress=False,
    )
    train(config, callbacks)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.fmean(r["seconds"] for r in rows[5:])  # mean (recorded steps included); no warm-up


def offline_cost(data: Path, root: Path, reps: int) -> None:

    from lnprobe.models import load, save_tiny
    from lnprobe.models.tiny import TinyConfig
    from lnprobe.probes import ProbeInputs
    from lnprobe.probes.gradvar.config import GradVarConfig
    from lnprobe.probes.gradvar.run import _Accumulator, select_groups
    from lnprobe.probes.inputs import probe_batches
    from lnprobe.train.loss import loss_sum

    loaded = load(save_tiny(root / "tiny", TinyConfig(seed=0)))
    model, sites = loaded.model.eval(), loaded.sites
    inputs = ProbeInputs(data=str(data / "instruct.json"), n=8, batch_size=8, progress=False)
    (batch,) = probe_batches(inputs, loaded.processor)

    def median(fn) -> float:
        return median_time(fn, reps)

    print("\n== offline gradvar, tiny model, one batch of 8 examples ==")
    for kinds in (("norms",), ("norms", "attn", "mlp")):
        groups = select_groups(model, sites, kinds)

        def plain():
            s, n = loss_sum(model, sites, batch)
            (s / n).backward()
            model.zero_grad(set_to_none=True)

        base = median(plain)
        for unit in ("example", "batch"):
            cfg = GradVarConfig(ckpt="tiny", inputs=inputs, out="-", unit=unit, groups=kinds)
            seconds = median(lambda cfg=cfg, g=groups: _Accumulator(g, sites, cfg).add(batch, model))
            print(
                f"groups {'+'.join(kinds):16} unit {unit:8} {seconds * 1e3:7.1f} ms per batch "
                f"vs forward+backward {base * 1e3:6.1f} ms: {seconds / base:5.2f}x"
            )
        model.requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--offline-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_synth(root / "data", SynthConfig(n=600, seed=0))
        if args.offline_only:
            return offline_cost(data, root, args.reps)
        print(
            f"{'regime':8} {'no callback':>12} {'K=1':>10} {'K=10':>10} {'K=1 ratio':>10} {'K=10 ratio':>11}"
        )
        for regime in ("ln", "full"):
            rounds: dict[str, list[float]] = {"none": [], "k1": [], "k10": []}
            own: dict[str, list[float]] = {"k1": [], "k10": []}
            for r in range(args.repeats):
                for label, every in (("none", 0), ("k1", 1), ("k10", 10)):
                    cbs = [TimedGradVar(every)] if every else []
                    rounds[label].append(
                        mean_step(data, root / f"{regime}-{label}-{r}", regime, args.steps, cbs)
                    )
                    if cbs:
                        own[label].append(cbs[0].seconds / args.steps)
            times = {label: statistics.median(values) for label, values in rounds.items()}
            print(
                f"{regime:8} {times['none'] * 1e3:>10.1f}ms {times['k1'] * 1e3:>8.1f}ms "
                f"{times['k10'] * 1e3:>8.1f}ms {times['k1'] / times['none']:>10.3f} "
                f"{times['k10'] / times['none']:>11.3f}   callback's own time: "
                f"K=1 {statistics.median(own['k1']) / times['none']:.1%}, "
                f"K=10 {statistics.median(own['k10']) / times['none']:.1%} of a step"
            )
        offline_cost(data, root, args.reps)


if __name__ == "__main__":
    main()
