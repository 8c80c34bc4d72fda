"""`--grad-ckpt auto` (issue 16): the profile's predicted peak against the measured peak, and the step time,
for each number m of checkpointed decoder layers (the lowest m), per regime, side by side in one run.

CPU (default): the miniature's shape (lnprobe.miniature.config.SHAPE), fp32; the peak is measured from
the allocation events of torch's profiler (bytes allocated during the step: activations, gradients,
temporaries; weights and AdamW moments are resident before it and excluded from both sides).
CUDA (`--device cuda --model llava-7b --batch 16 --tokens 800`): bf16 weights, fp32 trainable tensors;
the peak is `torch.cuda.max_memory_allocated` during the step minus the memory allocated before it.

    python benchmarks/grad_ckpt_plan.py [--regimes ln-simp,ln,lora,full] [--model SPEC] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def cuda_peak(step) -> int:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def build(spec: str | None, device: torch.device, dtype: torch.dtype):
    from lnprobe.models import build_from_config, resolve_config
    from lnprobe.models.tiny import build_tiny

    if spec is None:
        from lnprobe.miniature.config import SHAPE

        model = build_tiny(SHAPE)[0]
    else:
        model = build_from_config(resolve_config(spec), device="cpu" if device.type == "cpu" else "meta")
        if device.type != "cpu":
            model = model.to_empty(device=device)
            for p in model.parameters():
                torch.nn.init.normal_(p, std=0.02)
    return model.to(device=device, dtype=dtype)


def synthetic_batch(model, batch: int, tokens: int, device) -> dict:
    cfg = model.config
    image_id = getattr(cfg, "image_token_id", None) or cfg.image_token_index
    vision = cfg.vision_config
    n_image = (vision.image_size // vision.patch_size) ** 2
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, cfg.text_config.vocab_size - 10, (batch, tokens), generator=gen)
    ids[ids == image_id] = 11
    ids[:, 1 : 1 + n_image] = image_id
    labels = ids.clone()
    labels[:, : (1 + n_image + tokens) // 2] = -100  # the answer: the second half of the text
    pixels = torch.rand(batch, 3, vision.image_size, vision.image_size, generator=gen)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "pixel_values": pixels}
    return {k: v.to(device) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a preset or checkpoint (default: the miniature's shape)")
    ap.add_argument("--regimes", default="ln-simp,ln,lora,full")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"torch {torch.__version__}, {device}, {dtype}, batch {args.batch} x {args.tokens} tokens")
    print("regime   m  predicted MiB  measured MiB  pred/meas  step s  time vs m=0")
    for regime in args.regimes.split(","):
        one_regime(args, regime, device, dtype)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def one_regime(args, regime: str, device: torch.device, dtype: torch.dtype) -> None:
    from lnprobe.models import resolve_sites
    from lnprobe.regimes import RegimeOptions, apply_regime
    from lnprobe.train import memory as M
    from lnprobe.train.loss import loss_sum

    measure = cuda_peak if device.type == "cuda" else M.measured_peak
    model = build(args.model, device, dtype)
    model = apply_regime(model, regime, RegimeOptions(1 if args.model is None else 32, None, 0.0)).model
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    sites = resolve_sites(model)
    batch = synthetic_batch(model, args.batch, args.tokens, device)

    def step():
        loss_sum(model, sites, batch)[0].backward()

    prof = M.profile_step(model, sites, lambda: loss_sum(model, sites, batch)[0])
    resident = prof.weights + prof.moments
    n = len(sites.layers)
    base_time = None
    for m in sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1, n}):
        M.checkpoint_layers(model, sites, tuple(range(m)))
        step()
        model.zero_grad(set_to_none=True)
        peak = measure(step)
        model.zero_grad(set_to_none=True)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        t = statistics.median(times)
        base_time = base_time or t
        pred = prof.peak(tuple(range(m))) - resident
        print(
            f"{regime:8} {m:2d}  {pred / 2**20:13.1f}  {peak / 2**20:12.1f}  {pred / peak:9.3f}  "
            f"{t:6.3f}  {t / base_time:11.2f}"
        )


if __name__ == "__main__":
    main()
