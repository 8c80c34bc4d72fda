"""Issue 19, item 6: `full` finetuning with `--shard fsdp` on one GPU against the unsharded run on the same
batches, each in a fresh process: the two loss curves side by side, and each run's peak memory against
`lnprobe params`'s estimate (unsharded: the training state; sharded: `--shard`'s per-process estimate, the
state plus the gathered units). Both estimates exclude activations, kept small here by gradient
checkpointing (the default) and short sequences, so the goal is peak / estimate within 1.15.

    python benchmarks/shard_check.py                                      # CUDA, LLaVA-1B shapes, bf16
    python benchmarks/shard_check.py --shape tiny --device cpu --steps 3  # a dry run of this script (CPU)

The model is random (seeded) at the shape's dimensions with a byte-level BPE tokenizer; the data is the
synthetic shapes task (lnprobe.data.synth). Prints one JSON line per run and the comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lnprobe.models.config import TinyConfig  # noqa: E402

SHAPES = {
    # TinyLlama-1.1B decoder + CLIP ViT-L/14-336 + the LLaVA-1.5 connector: the `llava-1b` preset's dimensions
    "llava-1b": TinyConfig(
        connector="mlp2x_gelu",
        hidden_size=2048,
        intermediate_size=5632,
        num_layers=22,
        num_heads=32,
        num_kv_heads=4,
        vision_hidden_size=1024,
        vision_intermediate_size=4096,
        vision_layers=24,
        vision_heads=16,
        image_size=336,
        patch_size=14,
        vocab_size=32064,
        max_position_embeddings=2048,
    ),
    "tiny": TinyConfig(),
}


def one_run(model: str, data: str, out: str, shard: str, steps: int, device: str) -> dict:
    """Train `full` in this process; its loss per step and peak memory (CUDA: allocated bytes; CPU: RSS)."""
    import torch

    from lnprobe.train import TrainConfig, train

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(
        model=model,
        data=data,
        out=out,
        regime="full",
        shard=shard,
        max_steps=steps,
        batch_size=4,
        lr=1e-5,
        seed=0,
        device=device,
        progress=False,
    )
    train(config)
    rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"shard": shard, "losses": [r["loss"] for r in rows if "loss" in r], "peak_bytes": peak}


def estimates(model: str, device: str) -> dict:
    """`lnprobe params`'s estimates for `full` on this model: unsharded state and the one-process sharded
    state plus gathered units, in the run's dtype (bf16 on CUDA, fp32 on CPU)."""
    import torch

    from lnprobe.models import load
    from lnprobe.params import regime_report, sharded_estimate

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    loaded = load(model)
    report = regime_report(loaded.model, "full", dtype=dtype)  # `full` wraps nothing: the sites still hold
    sharded = sharded_estimate(loaded.model, loaded.sites, report.memory, dtype, 1)
    return {"none": report.memory.total, "fsdp": sharded.total, "parameters": report.total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llava-1b")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--one", nargs=5, metavar=("MODEL", "DATA", "OUT", "SHARD", "STEPS"), help="internal")
    args = parser.parse_args()
    if args.one:
        model, data, out, shard, steps = args.one
        print(json.dumps(one_run(model, data, out, shard, int(steps), args.device)))
        return
    from lnprobe.data.synth import SynthConfig, write_synth
    from lnprobe.models import save_tiny

    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny(Path(tmp) / "model", SHAPES[args.shape])
        data = write_synth(Path(tmp) / "data", SynthConfig(n=8 * args.steps, seed=0)) / "instruct.json"
        runs = {}
        for shard in ("none", "fsdp"):
            cmd = [sys.executable, __file__, "--device", args.device, "--one", str(model), str(data)]
            cmd += [str(Path(tmp) / shard), shard, str(args.steps)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{shard} run failed:\n{done.stderr[-3000:]}")
            runs[shard] = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(runs[shard]))
        est = estimates(str(model), args.device)
    report(runs, est, args)


def report(runs: dict, est: dict, args) -> None:
    a, b = runs["none"]["losses"], runs["fsdp"]["losses"]
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    rel = max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))
    size = f"{est['parameters'] / 1e6:,.1f} M parameters"
    print(f"\n{args.shape} ({size}), full, {args.steps} steps, {args.device}")
    print("step  unsharded loss  sharded loss")
    for step, (x, y) in enumerate(zip(a, b, strict=True), 1):
        print(f"{step:4d}  {x:14.6f}  {y:12.6f}")
    print(f"loss curves: max |difference| {diff:.3g} (relative {rel:.3g})")
    for shard in ("none", "fsdp"):
        peak, estimate = runs[shard]["peak_bytes"], est[shard]
        ratio = peak / estimate
        verdict = "met" if abs(ratio - 1) <= 0.15 else "NOT met"
        if args.device == "cpu":  # peak RSS holds the interpreter and libraries too
            verdict = "not judged on CPU: the RSS holds the interpreter"
        print(
            f"{shard:5}: peak {peak / 2**30:7.2f} GiB vs estimate {estimate / 2**30:7.2f} GiB = {ratio:.3f}x"
            f"  (goal within 15 %: {verdict})"
        )


if __name__ == "__main__":
    main()
