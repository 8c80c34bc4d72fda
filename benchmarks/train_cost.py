"""Training-step cost per regime, side by side in one run: step time and peak memory, with ratios to `full`.

    python benchmarks/train_cost.py                 # CPU: a small LLaVA (hidden 256, vocab 32064), batch 8
    python benchmarks/train_cost.py --plan gpu      # GPU: LLaVA shapes (1B, 7B), batch 16 x 800 tokens, bf16

Each measurement runs in a fresh process (peak RSS on CPU is per process; CUDA peaks are reset anyway).
Two loss paths are measured on the same model and batch: lnprobe's (answer tokens only, chunked
cross-entropy, no full fp32 logits) and transformers' own (`model(**batch).loss`), as the peer baseline
does. With `--peer PATH` the peer script (../shared/reference/peer_train_cost.py) is also run, in the same
job, with its own plan, and its JSON lines are printed beside ours.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

PLANS = {
    # (shape, regime, checkpoint every n-th decoder layer (0: none), loss path)
    "cpu": [
        ("bench", r, 1, loss)
        for r in ("full", "lora", "attn-qv", "attn-mlp", "ln", "ln-simp")
        for loss in ("lnprobe", "hf")
    ],
    "gpu": [("llava-1.5-7b", r, 1, "lnprobe") for r in ("ln-simp", "lora", "ln")]
    + [("llava-1.5-7b", "ln-simp", 2, "lnprobe")]
    + [("llava-1b", r, 1, "lnprobe") for r in ("full", "lora", "ln", "ln-simp")]
    + [("llava-1b", r, 1, "hf") for r in ("full", "ln")]
    + [("llava-1b", r, 0, "lnprobe") for r in ("full", "ln")],
}
BATCH = {"cpu": (8, 96), "gpu": (16, 224)}  # (sequences, text tokens after the image tokens)


def _config(shape: str):
    from lnprobe.models import resolve_config
    from lnprobe.models.tiny import TinyConfig, build_tokenizer, llava_config

    if shape != "bench":
        return resolve_config(shape)
    cfg = TinyConfig(
        hidden_size=256,
        intermediate_size=688,
        num_layers=4,
        num_heads=8,
        num_kv_heads=8,
        vision_hidden_size=128,
        vision_intermediate_size=512,
        vision_layers=2,
        vision_heads=4,
        image_size=64,
        patch_size=8,
    )
    config = llava_config(cfg, build_tokenizer(cfg.vocab_size))
    config.text_config.vocab_size = 32064  # LLaVA-1.5's vocabulary: the logits' real share of the cost
    return config


def _batch(config, n_seq: int, n_text: int, device: str) -> dict:
    vision = config.vision_config
    n_img = (vision.image_size // vision.patch_size) ** 2
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.text_config.vocab_size, (n_seq, n_text + n_img), generator=gen)
    ids[ids == config.image_token_id] = 5
    ids[:, 1 : 1 + n_img] = config.image_token_id
    labels = ids.clone()
    labels[:, : 1 + n_img] = -100  # as the peer: every text token after the image is a target
    pixels = torch.randn(n_seq, 3, vision.image_size, vision.image_size, generator=gen)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "pixel_values": pixels,
    }
    return {k: v.to(device) for k, v in batch.items()}


def worker(shape: str, regime: str, ckpt: int, loss_path: str, plan: str, steps: int, warmup: int) -> dict:
    from lnprobe.models import build_from_config
    from lnprobe.regimes import RegimeOptions, apply_regime
    from lnprobe.train.build import enable_checkpointing
    from lnprobe.train.loss import loss_sum

    device = "cuda" if plan == "gpu" else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = _config(shape)
    torch.manual_seed(0)
    model = build_from_config(config, device).to(dtype)
    total = sum(p.numel() for p in model.parameters())
    rank = 128 if plan == "gpu" else 32  # the GPU peer table uses LoRA rank 128
    applied = apply_regime(model, regime, RegimeOptions(lora_rank=rank))
    model, sites = applied.model, applied.sites
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if ckpt:
        enable_checkpointing(model, every_n_layers=ckpt)
    torch.backends.cuda.matmul.allow_tf32 = True  # as lnprobe train on CUDA
    model.train()
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=device == "cuda")
    batch = _batch(config, *BATCH[plan], device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            if loss_path == "lnprobe":
                s, n = loss_sum(model, sites, batch)
                loss = s / n
            else:
                loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated()
        if device == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) * 1024
    )
    return {
        "shape": shape,
        "regime": regime,
        "ckpt": ckpt,
        "loss_path": loss_path,
        "trainable_pct": 100 * sum(p.numel() for p in params) / total,
        "step_s": statistics.median(times),
        "peak_gib": peak / 2**30,
        "loss": float(loss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peer", help="path to peer_train_cost.py, run in the same job")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker), args.plan, args.steps, args.warmup)))
        return
    rows = []
    for spec in PLANS[args.plan]:
        cmd = [
            sys.executable,
            __file__,
            "--plan",
            args.plan,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--worker",
            json.dumps(spec),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        row = (
            json.loads(done.stdout.strip().splitlines()[-1])
            if done.returncode == 0
            else {
                "shape": spec[0],
                "regime": spec[1],
                "ckpt": spec[2],
                "loss_path": spec[3],
                "error": (done.stderr.strip().splitlines() or ["?"])[-1][:200],
            }
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    _table(rows)
    if args.peer:
        plan = "gpu" if args.plan == "gpu" else "tiny"
        subprocess.run([sys.executable, args.peer, "--plan", plan], check=False)


def _match(rows: list[dict], row: dict, **want) -> dict | None:
    keys = ("shape", "regime", "ckpt", "loss_path")
    return next(
        (r for r in rows if "error" not in r and all(r[k] == want.get(k, row[k]) for k in keys)), None
    )


def _ratio(row: dict, other: dict | None) -> str:
    if other is None:
        return f"{'-':>9} {'-':>9}"
    return f"{row['step_s'] / other['step_s']:>9.2f} {row['peak_gib'] / other['peak_gib']:>9.2f}"


def _table(rows: list[dict]) -> None:
    """Ratios to `full` (same loss path) and, for lnprobe's loss, to transformers' loss (same regime)."""
    print(
        f"\n{'shape':13} {'regime':9} {'ckpt':5} {'loss':8} {'train %':>8} {'step s':>8} {'peak GiB':>9} "
        f"{'step/full':>9} {'peak/full':>9} {'step/hf':>9} {'peak/hf':>9}"
    )
    for r in rows:
        head = f"{r['shape']:13} {r['regime']:9} {r['ckpt']!s:5} {r['loss_path']:8}"
        if "error" in r:
            print(f"{head} error: {r['error']}")
            continue
        vs_hf = _match(rows, r, loss_path="hf") if r["loss_path"] == "lnprobe" else None
        print(
            f"{head} {r['trainable_pct']:>8.3f} {r['step_s']:>8.4f} {r['peak_gib']:>9.3f} "
            f"{_ratio(r, _match(rows, r, regime='full'))} {_ratio(r, vs_hf)}"
        )


if __name__ == "__main__":
    main()
