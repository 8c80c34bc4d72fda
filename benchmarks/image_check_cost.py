"""Cost of decoding every image up front (issue 13: a broken image is named before training starts).

Compares, on the same N images in one run: the up-front check cold (every image decoded), warm in the same
process, and warm from the on-disk record (a new process over unchanged data); against what one epoch
spends on those images anyway (decode + the CLIP image processor, as LlavaDataset does per record).

    python benchmarks/image_check_cost.py [--n 400 --size 336]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_images(root: Path, n: int, size: int) -> list[Path]:
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    paths = []
    for i in range(n):
        img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = rng.randrange(size), rng.randrange(size)
            draw.ellipse(
                (x, y, x + size // 6, y + size // 6), fill=tuple(rng.randrange(256) for _ in range(3))
            )
        path = root / f"{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=int, default=336)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["LNPROBE_CACHE_DIR"] = str(root / "cache")
        from transformers import CLIPImageProcessor

        from lnprobe.data import images

        paths = make_images(root, args.n, args.size)
        items = [(p, "record") for p in paths]
        cold = timed(lambda: images.check_images(items))
        warm = timed(lambda: images.check_images(items))
        images._SEEN.clear()
        disk = timed(lambda: images.check_images(items))
        processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
        epoch = timed(lambda: [processor(images=[images.decode(p)], return_tensors="pt") for p in paths])
    print(f"{args.n} JPEGs of {args.size}x{args.size}, 2-core CPU")
    print(f"up-front check, cold:              {cold:8.3f} s  ({1e3 * cold / args.n:.2f} ms/image)")
    print(f"  again, same process:             {warm:8.3f} s  ({cold / warm:,.0f}x faster than cold)")
    print(f"  again, new process (disk record): {disk:7.3f} s  ({cold / disk:,.0f}x faster than cold)")
    print(f"one epoch's image work (decode + CLIP processor): {epoch:.3f} s")
    print(f"cold check / one epoch's image work: {cold / epoch:.2f}")


if __name__ == "__main__":
    main()
