"""`lnprobe patch` (issue 18): swapping norm parameters in place in one model against reloading a model per
condition, side by side in one run, on the same conditions, inputs and losses.

    in place   lnprobe.probes.patch (one tuned model; base values kept for the differing tensors only)
    reload     for every condition, `load()` the base or the tuned checkpoint afresh, copy the unit's
               norms from the other one, and score the same seeded batches

Both score `base`, `tuned`, and every unit into the base and out of the tuned model (no cumulative curves);
the script checks that their losses agree and prints the time ratio.

    python benchmarks/patch_cost.py [--n 32] [--layers 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="held-out examples")
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()

    from lnprobe.data.synth import SynthConfig, write_synth
    from lnprobe.models import TinyConfig, save_tiny
    from lnprobe.probes import PROBES, ProbeInputs
    from lnprobe.probes.patch.config import PatchConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_synth(root / "data", SynthConfig(n=max(60, args.n), seed=0)) / "instruct.json"
        base = save_tiny(root / "base", TinyConfig(seed=0, num_layers=args.layers))
        tuned = planted_tuned(base, root / "tuned")
        inputs = ProbeInputs(data=str(data), n=args.n, batch_size=8, progress=False)
        cfg = PatchConfig(
            base=str(base),
            tuned=str(tuned),
            inputs=inputs,
            out=str(root / "out"),
            cumulative=False,
            activations=False,  # the reload side scores weight conditions only
        )
        start = time.perf_counter()
        record = PROBES.get("patch").run(cfg)
        in_place = time.perf_counter() - start
        start = time.perf_counter()
        reloaded = reload_each(str(base), str(tuned), inputs, record)
        reload_time = time.perf_counter() - start
    worst = max(abs(a - b) for a, b in reloaded)
    print(f"tiny model, {args.layers} decoder layers, {args.n} examples, {len(reloaded)} conditions")
    passes = record.forward_passes
    print(f"in place: {in_place:.2f} s ({passes} passes) | reload per condition: {reload_time:.2f} s")
    print(f"reload / in place: {reload_time / in_place:.2f}x; max |loss difference| {worst:.2e}")


def planted_tuned(base: Path, out: Path) -> Path:
    """The base with every decoder norm weight scaled by a seeded random factor (an LN-tuned stand-in)."""
    from lnprobe.models import load

    loaded = load(str(base))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "layernorm" in name or name.endswith("norm.weight"):
                p.mul_(1 + 0.5 * torch.randn(p.shape, generator=gen))
    loaded.model.save_pretrained(out)
    loaded.processor.save_pretrained(out)
    return out


def reload_each(base: str, tuned: str, inputs, record) -> list[tuple[float, float]]:
    """(lnprobe's loss, the reloaded model's loss) for base, tuned and every unit both ways."""
    from lnprobe.models import load
    from lnprobe.probes.inputs import probe_batches
    from lnprobe.train.loss import example_losses

    other = {"base": tuned, "tuned": base}

    def score(start: str, params: tuple[str, ...]) -> float:
        loaded = load(base if start == "base" else tuned)
        if params:
            source = dict(load(other[start]).model.named_parameters())
            with torch.no_grad():
                for name, p in loaded.model.named_parameters():
                    if name in params:
                        p.copy_(source[name])
        loaded.model.eval()
        batches = probe_batches(inputs, loaded.processor)
        with torch.no_grad():
            losses = torch.cat([example_losses(loaded.model, loaded.sites, b)[0] for b in batches])
        return float(losses.double().mean())

    pairs = [(record.losses["base"], score("base", ())), (record.losses["tuned"], score("tuned", ()))]
    for unit in record.units:
        params = tuple(unit["params"])
        pairs.append((unit["into_base"]["loss"], score("base", params)))
        pairs.append((unit["out_of_tuned"]["loss"], score("tuned", params)))
    return pairs


if __name__ == "__main__":
    main()
