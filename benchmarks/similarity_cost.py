"""Similarity-probe cost, side by side in one run:

(a) capture overhead on the tiny model: a plain forward vs raw `register_forward_hook` capture vs lnprobe's
    nnsight capture of every decoder-layer output (goal <= 1.10x the plain forward);
(b) all-pairs linear CKA on CPU (13 layers x n=2048 x d=384; `--big` adds 33 x 4096 x 4096) for lnprobe
    and the PyPI peers pytorch-cka, ckatorch and torch-cka (run in their own venv, made by
    benchmarks/peers_env.sh), each with its max error against a float64 reference (goal: >= 10x the fastest
    peer at <= 1e-6);
(c) MinibatchCKA peak memory for N = 1k vs 100k examples (goal <= 1.1x);
(d) `--gpu` (or `--gpu-only`): all-pairs CKA, 33 x 4096 x 4096 on CUDA, float64 / float32 / TF32 with
    errors (goal <= 15 ms on an H100).

    python benchmarks/similarity_cost.py [--big] [--gpu] [--peers benchmarks/.peers-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from timing import median_time

PEER_SCRIPT = r"""
import json, statistics, sys, time, types
import torch
from safetensors.torch import load_file
feats = load_file(sys.argv[1])["x"]  # [L, n, d] float32
L = feats.shape[0]

def timed(fn, reps):
    out, times = None, []
    for _ in range(reps):
        t = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t)
    return out, statistics.median(times)

results = {}
try:
    from ckatorch.core import cka_base
    def run():
        return torch.tensor([[float(cka_base(feats[i], feats[j])) for j in range(L)] for i in range(L)])
    m, s = timed(run, 1); results["ckatorch"] = (m.tolist(), s, "biased")
except Exception as e:
    results["ckatorch"] = repr(e)[:200]
try:
    from cka.hsic import hsic
    def run():
        x = feats.double(); x = x - x.mean(1, keepdim=True)
        g = x @ x.transpose(1, 2)
        out = hsic(g, g)
        h = out[0] if isinstance(out, tuple) else out
        d = torch.sqrt(torch.diagonal(h))
        return h / torch.outer(d, d)
    m, s = timed(run, 1); results["pytorch-cka"] = (m.tolist(), s, "unbiased")
except Exception as e:
    results["pytorch-cka"] = repr(e)[:200]
try:
    from torch_cka.cka import CKA
    me = types.SimpleNamespace(device="cpu")
    def run():
        g = []
        for i in range(L):
            x = feats[i] - feats[i].mean(0); g.append(x @ x.T)  # float32: its ones vector is float32
        h = torch.tensor([[CKA._HSIC(me, g[i], g[j]) for j in range(L)] for i in range(L)],
                         dtype=torch.float64)
        d = torch.sqrt(torch.diagonal(h))
        return h / torch.outer(d, d)
    m, s = timed(run, 1); results["torch-cka"] = (m.tolist(), s, "unbiased")
except Exception as e:
    results["torch-cka"] = repr(e)[:200]
print(json.dumps(results))
"""


def capture_overhead(reps: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from lnprobe.capture import Capture, select_sites
    from lnprobe.models import build_tiny, resolve_sites
    from tests.conftest import image_batch

    model, processor = build_tiny()
    batch = image_batch(processor, n=8)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    sites = resolve_sites(model)

    @torch.no_grad()
    def plain():
        model(**inputs)

    @torch.no_grad()
    def hooks():
        got = []
        hs = [
            model.get_submodule(n).register_forward_hook(lambda m, a, o: got.append(o)) for n in sites.layers
        ]
        model(**inputs)
        for h in hs:
            h.remove()
        return [g[inputs["attention_mask"].bool()] for g in got]

    cap = Capture(model, select_sites(sites, ["layer.*"]), "all")
    t_plain, t_hooks, t_cap = (
        median_time(f, reps, warmup=20) for f in (plain, hooks, lambda: cap.run(batch))
    )
    print("== (a) capture overhead, tiny model, batch 8, all decoder-layer outputs ==")
    print(
        f"plain forward {t_plain * 1e3:.2f} ms | forward hooks {t_hooks * 1e3:.2f} ms "
        f"({t_hooks / t_plain:.2f}x) | lnprobe nnsight capture {t_cap * 1e3:.2f} ms "
        f"({t_cap / t_plain:.2f}x plain, "
        f"{t_cap / t_hooks:.2f}x hooks)"
    )


def all_pairs(shapes, peers: str | None) -> None:
    from lnprobe.probes import cka_matrix

    print("\n== (b) all-pairs linear CKA (biased), CPU ==")
    for L, n, d in shapes:
        gen = torch.Generator().manual_seed(0)
        base = torch.randn(n, d, generator=gen)
        feats = torch.stack(
            [torch.tanh(base @ torch.randn(d, d, generator=gen) / d**0.5) + 0.1 * i for i in range(L)]
        )  # [L, n, d] float32, related layers with offsets
        reference = cka_matrix(list(feats), matmul_dtype=torch.float64)
        unbiased = cka_matrix(list(feats), debiased=True, matmul_dtype=torch.float64)
        rows = []
        for label, dtype in (("lnprobe fp64", torch.float64), ("lnprobe fp32-matmul", torch.float32)):
            reps = 3 if n * d < 4096 * 4096 else 1
            secs = median_time(lambda dt=dtype, f=feats: cka_matrix(list(f), matmul_dtype=dt), reps, warmup=1)
            err = float((cka_matrix(list(feats), matmul_dtype=dtype) - reference).abs().max())
            rows.append((label, secs, err))
        if peers:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "feats.safetensors"
                save_file({"x": feats.contiguous()}, str(path))
                done = subprocess.run([peers, "-c", PEER_SCRIPT, str(path)], capture_output=True, text=True)
                results = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
                for name, value in results.items():
                    if isinstance(value, str):
                        rows.append((name, float("nan"), value))
                    else:
                        m, secs, estimator = value  # each peer against its own estimator's fp64 answer
                        ref = reference if estimator == "biased" else unbiased
                        err = float((torch.tensor(m, dtype=torch.float64) - ref).abs().max())
                        rows.append((f"{name} ({estimator})", secs, err))
        fastest_peer = min(
            (r[1] for r in rows if not r[0].startswith("lnprobe") and r[1] == r[1]), default=None
        )
        print(f"-- {L} layers x n={n} x d={d}")
        for label, secs, err in rows:
            speed = (
                f"  {fastest_peer / secs:6.1f}x fastest peer"
                if fastest_peer and label.startswith("lnprobe")
                else ""
            )
            err_text = f"max err {err:.1e}" if isinstance(err, float) else f"failed: {err}"
            print(f"{label:22} {secs:9.3f} s  {err_text}{speed}")


def minibatch_memory() -> None:
    code = r"""
import resource, sys, torch
from lnprobe.probes import MinibatchCKA
N, L, d, b = int(sys.argv[1]), 13, 384, 256
acc = MinibatchCKA()
gen = torch.Generator().manual_seed(0)
for start in range(0, N, b):
    x = torch.randn(b, d, generator=gen)
    acc.update([x + 0.1 * i * torch.randn(b, d, generator=gen) for i in range(L)])
acc.compute()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # the process's peak RSS, MiB
"""
    peaks = {}
    for n in (1_000, 100_000):
        done = subprocess.run(
            [sys.executable, "-c", code, str(n)], capture_output=True, text=True, check=True
        )
        peaks[n] = float(done.stdout.strip().splitlines()[-1])
    print("\n== (c) MinibatchCKA peak RSS of the process (13 layers, d=384, minibatches of 256) ==")
    print(
        f"N=1k: {peaks[1_000]:.1f} MiB | N=100k: {peaks[100_000]:.1f} MiB | "
        f"ratio {peaks[100_000] / max(peaks[1_000], 1e-9):.2f}x"
    )


def gpu(device: str = "cuda", n: int = 4096, layers: int = 33) -> None:
    """33 x 4096 x 4096 on CUDA: float64 reference, float32 (full and TF32 Grams), and the peer's plain
    torch Gram (bf16 features, TF32), with the max error of each against the float64 answer."""
    from lnprobe.probes import cka_matrix

    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    gen = torch.Generator(device=device).manual_seed(0)
    base = torch.randn(n, n, device=device, generator=gen)
    mix = torch.randn(n, n, device=device, generator=gen) / n**0.5
    chain, feats = base, [base]
    for i in range(layers - 1):  # related layers, each with its own offset (not fed forward)
        chain = torch.tanh(chain @ mix) * 2
        feats.append(chain + 0.1 * i)
    del base, mix, chain
    name = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"\n== (d) all-pairs linear CKA (biased), {layers} x {n} x {n}, {name} ==")
    reference = None
    for label, dtype, precision in (
        ("float64", torch.float64, "highest"),
        ("float32", torch.float32, "highest"),
        ("float32, TF32 Grams", torch.float32, "high"),
    ):
        torch.set_float32_matmul_precision(precision)

        def run(dt=dtype):
            out = cka_matrix(feats, matmul_dtype=dt)
            sync()
            return out

        out = run()
        reference = out if reference is None else reference
        ms = median_time(run, 10) * 1e3
        err = float((out - reference).abs().max())
        print(f"{label:22} {ms:8.1f} ms   max |error| vs float64 {err:.1e}", flush=True)
    torch.set_float32_matmul_precision("highest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also 33 layers x 4096 x 4096 on CPU (minutes)")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="only (d), the GPU mode")
    parser.add_argument("--peers", help="python of the peers' venv (benchmarks/peers_env.sh)")
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    if args.gpu_only:
        return gpu()
    capture_overhead(args.reps)
    all_pairs([(13, 2048, 384)] + ([(33, 4096, 4096)] if args.big else []), args.peers)
    minibatch_memory()
    if args.gpu:
        gpu()


if __name__ == "__main__":
    main()
