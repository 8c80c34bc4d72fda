"""Cost of `lnprobe eval`, measured side by side in one run.

1. Generation: batched greedy (left-padded, length-grouped) vs one prompt at a time, same prompts, same
   outputs (checked), on a tiny LLaVA on CPU: items per second and the speed-up.
2. Scoring at full benchmark scale on synthetic data: CIDEr-D + BLEU for 5,000 images x 5 references
   (COCO Karpathy test size), lnprobe vs pycocoevalcap on the same tokens (when installed); VQA accuracy
   for 214,354 questions (VQAv2 val size).

python benchmarks/eval_cost.py [--items 64] [--batch-size 8] [--images 5000] [--questions 214354]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
from pathlib import Path


def generation(items: int, batch_size: int) -> None:
    import torch

    from lnprobe.eval.fixtures import write_fixture
    from lnprobe.eval.generate import generate
    from lnprobe.eval.run import EvalConfig, prepare
    from lnprobe.models import load
    from lnprobe.models.tiny import TinyConfig, save_tiny

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_tiny(Path(tmp) / "tiny", TinyConfig(seed=0))
        write_fixture("vqav2", Path(tmp) / "d", n=items)
        cfg = EvalConfig(ckpt=str(ckpt), bench="vqav2", data=str(Path(tmp) / "d"), out=str(Path(tmp) / "o"))
        _, prompts = prepare(cfg)
        loaded = load(str(ckpt))
        kw = dict(max_new_tokens=16, progress=False)
        generate(loaded.model, loaded.processor, prompts[:2], batch_size=2, **kw)  # warm-up
        t0 = time.perf_counter()
        single = generate(loaded.model, loaded.processor, prompts, batch_size=1, **kw)
        t1 = time.perf_counter()
        batched = generate(loaded.model, loaded.processor, prompts, batch_size=batch_size, **kw)
        t2 = time.perf_counter()
    same = sum(a == b for a, b in zip(single, batched, strict=True))
    print(f"generation, {len(prompts)} prompts, 16 new tokens max, tiny LLaVA on CPU:")
    print(f"  one at a time   {len(prompts) / (t1 - t0):7.1f} items/s")
    print(
        f"  batch {batch_size:<3}       {len(prompts) / (t2 - t1):7.1f} items/s",
        f"  speed-up {(t1 - t0) / (t2 - t1):.2f}x",
    )
    print(f"  identical outputs: {same}/{len(prompts)}")


def captions(images: int) -> None:
    from lnprobe.eval.captions import bleu, cider_d

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)]
    refs = {i: [" ".join(rng.choices(vocab, k=rng.randint(8, 14))) for _ in range(5)] for i in range(images)}
    hyps = {i: [" ".join(rng.choices(vocab, k=rng.randint(8, 12)))] for i in range(images)}
    split_h = {i: h[0].split() for i, h in hyps.items()}
    split_r = {i: [r.split() for r in v] for i, v in refs.items()}
    t0 = time.perf_counter()
    ours = cider_d(split_h, split_r)[0]
    ours_bleu = bleu(split_h, split_r)[3]
    t1 = time.perf_counter()
    print(f"captions, {images} images x 5 references: lnprobe CIDEr-D + BLEU {t1 - t0:.2f} s")
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        print("  pycocoevalcap not installed: no side-by-side")
        return
    t2 = time.perf_counter()
    theirs = Cider().compute_score(refs, hyps)[0]
    theirs_bleu = Bleu(4).compute_score(refs, hyps, verbose=0)[0][3]
    t3 = time.perf_counter()
    print(f"  pycocoevalcap {t3 - t2:.2f} s; lnprobe / pycocoevalcap time {(t1 - t0) / (t3 - t2):.2f}x")
    print(
        f"  |CIDEr-D difference| {abs(ours - theirs):.1e},",
        f"|BLEU-4 difference| {abs(ours_bleu - theirs_bleu):.1e}",
    )


def vqa(questions: int) -> None:
    from lnprobe.eval.vqa import vqa_scores

    rng = random.Random(0)
    words = ["yes", "no", "2", "two", "red", "hot-dog", "the dog", "tennis racket", "1,000", "dont"]
    items = [
        {"prediction": rng.choice(words) + rng.choice(["", ".", "!"]), "answers": rng.choices(words, k=10)}
        for _ in range(questions)
    ]
    t0 = time.perf_counter()
    s = vqa_scores(items)
    t1 = time.perf_counter()
    print(
        f"VQA accuracy, {questions} questions: {t1 - t0:.2f} s",
        f"({questions / (t1 - t0):,.0f} / s); accuracy {s['accuracy']:.2f}",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--questions", type=int, default=214354)
    args = ap.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
    )
    generation(args.items, args.batch_size)
    captions(args.images)
    vqa(args.questions)


if __name__ == "__main__":
    main()
