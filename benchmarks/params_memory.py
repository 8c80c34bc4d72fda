"""Benchmark for `lnprobe params`: counts and memory estimates at 7B/13B shapes for every regime, how fast
they are (meta device vs. allocating real weights, side by side), and how the static memory estimate
compares with the peak GPU memory measured by the peer baseline (../shared/PITFALLS.md, H100, random
weights, batch 16 x 800 tokens, bf16 autocast, trainable params in fp32).

    python benchmarks/params_memory.py [--skip-real]

The estimate excludes activations, so estimate / peak < 1 and the remainder is the activation share.
"""

from __future__ import annotations

import argparse
import time

import torch

from lnprobe.models import build_from_config, resolve_config, resolve_sites
from lnprobe.params import estimate_memory, params_table, regime_report
from lnprobe.regimes import REGIMES, RegimeOptions

GIB = 2**30
# (preset, regime, lora rank, setting, measured peak GiB) from the peer table in ../shared/PITFALLS.md.
# "ln+conn" is the peer's LN set: LLM norms + connector (no embeddings/head).
PEER = [
    ("llava-1b", "full", None, "b16 ckpt", 22.3),
    ("llava-1b", "lora", 128, "b16 ckpt", 10.7),
    ("llava-1b", "ln+conn", None, "b16 ckpt", 9.58),
    ("llava-1b", "ln-simp", None, "b16 ckpt", 9.46),
    ("llava-1b", "full", None, "b16 no ckpt", 48.1),
    ("llava-1b", "ln+conn", None, "b16 no ckpt", 25.4),
    ("llava-1.5-7b", "lora", 128, "b16 ckpt", 26.4),
    ("llava-1.5-7b", "ln+conn", None, "b16 ckpt", 22.6),
    ("llava-1.5-7b", "ln-simp", None, "b16 ckpt", 22.3),
    ("llava-1.5-7b", "ln-simp", None, "b8 no ckpt", 43.8),
    ("llava-1.5-7b", "ln-simp", None, "b8 ckpt", 17.7),
    ("llava-1.5-7b", "lora", 128, "b8 ckpt", 22.1),
]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def counts_and_speed() -> None:
    print("== trainable parameters and estimate per regime (bf16 weights) ==")
    print(f"{'preset':14} {'regime':10} {'trainable':>15} {'%':>9} {'est GiB':>8} {'secs':>6}")
    for preset in ("llava-7b", "llava-13b", "llava-1.5-7b", "llava-1.5-13b"):
        config = resolve_config(preset)
        for regime in REGIMES.names():
            (report,), secs = timed(
                lambda c=config, r=regime: params_table(lambda: build_from_config(c), [r])
            )
            print(
                f"{preset:14} {regime:10} {report.trainable:>15,} {report.percent:>9.4f} "
                f"{report.memory.total / GIB:>8.2f} {secs:>6.2f}"
            )


def meta_vs_real() -> None:
    config = resolve_config("llava-1b")
    _, meta = timed(lambda: build_from_config(config, "meta"))
    _, real = timed(lambda: build_from_config(config, "cpu"))
    print(
        f"\n== building llava-1b: meta {meta:.3f} s vs real fp32 weights on CPU {real:.1f} s "
        f"(ratio real/meta {real / meta:,.0f}x) =="
    )


def estimate(preset: str, regime: str, rank: int | None):
    model = build_from_config(resolve_config(preset))
    if regime != "ln+conn":
        return regime_report(model, regime, RegimeOptions(lora_rank=rank or 32)).memory
    report = regime_report(model, "ln-simp")
    connector = sum(p.numel() for p in model.get_submodule(resolve_sites(model).connector).parameters())
    frozen = report.total - report.trainable - connector
    return estimate_memory(frozen, report.trainable + connector, torch.bfloat16)


def against_peer() -> None:
    print("\n== static estimate vs peer-measured peak (H100, from ../shared/PITFALLS.md) ==")
    head = ("est GiB", "peak GiB", "est/peak", "rest GiB")
    print(f"{'preset':14} {'regime':9} {'setting':12} " + " ".join(f"{h:>9}" for h in head))
    for preset, regime, rank, setting, peak in PEER:
        est = estimate(preset, regime, rank).total / GIB
        name = f"{regime} r{rank}" if rank else regime
        values = (est, peak, est / peak, peak - est)
        print(f"{preset:14} {name:9} {setting:12} " + " ".join(f"{v:>9.2f}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-real", action="store_true", help="skip allocating the 1B model on CPU")
    args = parser.parse_args()
    counts_and_speed()
    if not args.skip_real:
        meta_vs_real()
    against_peer()


if __name__ == "__main__":
    main()
