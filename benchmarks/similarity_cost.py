"""Similarity-probe cost, side by side in one run. Every ratio compares the same estimator on the same
float32 inputs at the same precision (issue 16), and each lnprobe time is also set against the float32 Gram
floor measured in the same run (the time of the L float32 Gram matrices alone, plain torch):

(a) capture overhead on the tiny model: a plain forward vs raw `register_forward_hook` capture vs lnprobe's
    nnsight capture of every decoder-layer output (goal <= 1.10x the plain forward);
(b) linear CKA on CPU, float32 features, max error of each result against a float64 NumPy reference written
    here (independent of lnprobe):
    - 13 x 13 all pairs, n=2048, d=384, unbiased: lnprobe `cka_matrix(debiased=True, matmul_dtype=float32)`
      vs pytorch-cka's unbiased `cka_from_features` (float32, its public API; in its own venv, made by
      benchmarks/peers_env.sh); goals <= 1.3x the Gram floor and >= 4x pytorch-cka;
    - the same, biased: lnprobe vs a plain float32 torch biased reference (centre, Grams, pair products)
      and the float64 NumPy reference (`--slow-peers` adds ckatorch's biased `cka_base` and torch-cka);
    - one pair n=64, d=4096, unbiased: `linear_cka` vs a float64 NumPy Gram reference (goal <= 2x);
    - one pair n=8192, d=768, unbiased: `linear_cka(..., matmul_dtype=float32)` (goal <= 0.2 s), against
      the floor of its feature form: the three float32 d x d products alone;
    every lnprobe result within 1e-6 of float64;
(c) MinibatchCKA peak memory for N = 1k vs 100k examples (goal <= 1.1x);
(d) `--gpu` (or `--gpu-only`): all-pairs CKA, 33 x 4096 x 4096 on CUDA, float64 / float32 / TF32 with
    errors (goal <= 15 ms on an H100);
(e) `lnprobe similarity` on the tiny model: the share of its wall time spent in metric accumulation (Grams
    and HSIC updates), capture, bootstrap intervals and writing (goal: accumulation <= 10 %).

Timings are medians of `--reps-cka` calls (after one warm-up).

    python benchmarks/similarity_cost.py [--peers benchmarks/.peers-venv/bin/python] [--slow-peers] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from timing import median_time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PEER_SCRIPT = r"""
import json, statistics, sys, time, types
import torch
from safetensors.torch import load_file
data = load_file(sys.argv[1])
reps, slow = int(sys.argv[2]), sys.argv[3] == "1"

def timed(fn, reps):
    out, times = fn(), []  # one warm-up
    for _ in range(reps):
        t = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t)
    return out.tolist(), statistics.median(times)

results = {}
from cka import cka_from_features  # pytorch-cka: unbiased HSIC, float32 in, float32 out
feats = data["all"]
results["pytorch-cka all"] = timed(lambda: cka_from_features(feats, feats), reps)
for case in ("p64", "p8192"):
    x, y = data[case + "x"][None], data[case + "y"][None]
    calls = 1 if case == "p8192" else max(reps, 30)
    results["pytorch-cka " + case] = timed(lambda: cka_from_features(x, y), calls)
if slow:
    from ckatorch.core import cka_base  # biased, per pair
    L = feats.shape[0]
    run = lambda: torch.tensor([[float(cka_base(feats[i], feats[j])) for j in range(L)] for i in range(L)])
    results["ckatorch all"] = timed(run, 1)
    from torch_cka.cka import CKA
    me = types.SimpleNamespace(device="cpu")
    def run():
        g = [(f - f.mean(0)) @ (f - f.mean(0)).T for f in feats]
        h = torch.tensor([[CKA._HSIC(me, g[i], g[j]) for j in range(L)] for i in range(L)],
                         dtype=torch.float64)
        d = torch.sqrt(torch.diagonal(h))
        return h / torch.outer(d, d)
    results["torch-cka all"] = timed(run, 1)
print(json.dumps(results))
"""


def capture_overhead(reps: int) -> None:
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


def timed(fn, reps: int):
    """(median seconds over `reps` calls, the output of the warm-up call)."""
    out = fn()
    return median_time(fn, reps, warmup=0), out


def related_layers(layers: int, n: int, d: int, seed: int = 0) -> torch.Tensor:
    """`[L, n, d]` float32: related layers (tanh of mixes of one base), each with its own offset."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d, generator=gen)
    mixes = [torch.randn(d, d, generator=gen) / d**0.5 for _ in range(layers)]
    return torch.stack([torch.tanh(base @ m) + 0.1 * i for i, m in enumerate(mixes)])


def np_cka(feats: np.ndarray, debiased: bool) -> np.ndarray:
    """The float64 NumPy reference, all pairs of `[L, n, d]`: centred Grams, then the biased <K, L>/(n-1)²
    or Song et al.'s unbiased HSIC (diagonals zeroed), normalised."""
    c = feats - feats.mean(1, keepdims=True)
    g = c @ c.transpose(0, 2, 1)  # [L, n, n]
    layers, n = g.shape[0], g.shape[1]
    if debiased:
        g[:, np.arange(n), np.arange(n)] = 0.0
        flat, total, rows = g.reshape(layers, -1), g.sum((1, 2)), g.sum(2)
        h = flat @ flat.T + np.outer(total, total) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rows @ rows.T
    else:
        flat = g.reshape(layers, -1)
        h = flat @ flat.T
    d = np.sqrt(np.diag(h))
    return h / np.outer(d, d)


def np_pair_features(x: np.ndarray, y: np.ndarray) -> float:
    """The float64 NumPy reference for one tall pair, unbiased, in feature form (centred X, so K̃1 = -kx and
    1ᵀK̃1 = -Σ kx): tr(K̃L̃) = |XᵀY|² - kx·ky."""
    a, b = x - x.mean(0), y - y.mean(0)
    n, ka, kb = a.shape[0], (a * a).sum(1), (b * b).sum(1)

    def hsic(u, v, ku, kv):
        trace = np.square(u.T @ v).sum() - ku @ kv
        return (trace + ku.sum() * kv.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ku @ kv)) / (n * (n - 3))

    return hsic(a, b, ka, kb) / np.sqrt(hsic(a, a, ka, ka) * hsic(b, b, kb, kb))


def torch_biased_f32(feats: torch.Tensor) -> torch.Tensor:
    """A plain float32 biased reference, as the peers compute it: centre once, Grams, pair products."""
    c = feats - feats.mean(1, keepdim=True)
    flat = torch.bmm(c, c.transpose(1, 2)).flatten(1)
    h = flat @ flat.T
    d = torch.sqrt(torch.diagonal(h))
    return h / torch.outer(d, d)


def run_peers(python: str, tensors: dict, reps: int, slow: bool) -> dict:
    """The peers' results in their own venv, on the same float32 tensors: name → (output, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feats.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        cmd = [python, "-c", PEER_SCRIPT, str(path), str(reps), "1" if slow else "0"]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"peers failed: {done.stderr.strip()[-300:]}")
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cka_cases(peers: str | None, slow: bool, reps: int) -> list[dict]:
    """Every case of (b): rows of implementation, seconds, max error vs float64, and the case's floor."""
    feats = related_layers(13, 2048, 384)
    pairs = {"p64": related_layers(2, 64, 4096, 1), "p8192": related_layers(2, 8192, 768, 2)}
    tensors = {"all": feats} | {k + s: v[i] for k, v in pairs.items() for i, s in enumerate("xy")}
    peer = run_peers(peers, tensors, reps, slow) if peers else {}
    rows = all_pairs_rows(feats, peer, reps)
    for key, (n, d) in {"p64": (64, 4096), "p8192": (8192, 768)}.items():
        # ms-scale calls vary ~2x between neighbours on a shared VM: more calls for the median there
        many = max(reps, 30 if key == "p64" else 7)
        rows += pair_rows(key, pairs[key], f"pair n={n} d={d} unbiased", peer.get(f"pytorch-cka {key}"), many)
    return rows


def all_pairs_rows(feats: torch.Tensor, peer: dict, reps: int) -> list[dict]:
    from lnprobe.probes import cka_matrix

    floor, _ = timed(lambda: torch.bmm(feats, feats.transpose(1, 2)), reps)
    rows = []
    for debiased in (True, False):
        case = f"13x13 n=2048 d=384 {'unbiased' if debiased else 'biased'}"
        start = time.perf_counter()
        ref = np_cka(feats.double().numpy(), debiased)
        t_ref = time.perf_counter() - start

        def add(name, secs, out, case=case, ref=ref):
            err = float(np.abs(np.asarray(out, dtype=np.float64) - ref).max())
            rows.append(dict(case=case, name=name, secs=secs, err=err, floor=floor))

        secs, out = timed(lambda d=debiased: cka_matrix(list(feats), d, torch.float32), reps)
        add("lnprobe cka_matrix float32", secs, out)
        add("NumPy float64 Gram reference", t_ref, ref)
        if debiased and "pytorch-cka all" in peer:
            add(
                "pytorch-cka cka_from_features float32",
                peer["pytorch-cka all"][1],
                peer["pytorch-cka all"][0],
            )
        if not debiased:
            secs, out = timed(lambda: torch_biased_f32(feats), reps)
            add("plain torch float32 biased reference", secs, out)
            for name in ("ckatorch all", "torch-cka all"):
                if name in peer:
                    add(f"{name.split()[0]} (per pair)", peer[name][1], peer[name][0])
    return rows


def pair_rows(key: str, pair: torch.Tensor, case: str, peer, reps: int) -> list[dict]:
    """One unbiased pair: lnprobe float64 and float32 products vs the NumPy float64 reference (Gram form
    when n < d, feature form otherwise) and pytorch-cka; floor: the float32 products of that form alone
    (two n x n Grams, or XᵀX, YᵀY and XᵀY)."""
    from lnprobe.probes import linear_cka

    x, y = pair
    gram_form = x.shape[0] < x.shape[1]
    products = (lambda: (x @ x.T, y @ y.T)) if gram_form else (lambda: (x.T @ x, y.T @ y, x.T @ y))
    floor, _ = timed(products, reps)
    x64, y64 = x.double().numpy(), y.double().numpy()
    start = time.perf_counter()
    ref = float(np_cka(np.stack([x64, y64]), True)[0, 1]) if gram_form else np_pair_features(x64, y64)
    t_ref = time.perf_counter() - start
    if gram_form:  # cheap: time it properly, from the same float32 input
        xy32 = np.stack([x.numpy(), y.numpy()])
        t_ref, _ = timed(lambda: np_cka(xy32.astype(np.float64), True), reps)
    rows = []
    for name, dtype in (("lnprobe linear_cka float32", torch.float32), ("lnprobe linear_cka float64", None)):
        secs, out = timed(lambda dt=dtype: linear_cka(x, y, True, dt or torch.float64), reps)
        rows.append(dict(case=case, name=name, secs=secs, err=abs(out - ref), floor=floor))
    form = "Gram" if gram_form else "feature-form"
    rows.append(dict(case=case, name=f"NumPy float64 {form} reference", secs=t_ref, err=0.0, floor=floor))
    if peer:
        err = abs(float(np.asarray(peer[0]).ravel()[0]) - ref)
        rows.append(
            dict(case=case, name="pytorch-cka cka_from_features float32", secs=peer[1], err=err, floor=floor)
        )
    return rows


def print_cka(rows: list[dict]) -> None:
    print("\n== (b) linear CKA, CPU, float32 input; error = max |CKA - float64 NumPy reference| ==")
    case = None
    for r in rows:
        if r["case"] != case:
            case = r["case"]
            print(f"-- {case}  (float32 Gram floor {r['floor']:.4f} s)")
        print(
            f"{r['name']:42} {r['secs']:9.4f} s  {r['secs'] / r['floor']:6.2f}x floor  max err {r['err']:.1e}"
        )


def cka_goals(rows: list[dict]) -> None:
    """The issue's goals, each a ratio within this run."""

    def get(case, prefix):
        return next((r for r in rows if r["case"] == case and r["name"].startswith(prefix)), None)

    unb, pair64, big = (
        "13x13 n=2048 d=384 unbiased",
        "pair n=64 d=4096 unbiased",
        "pair n=8192 d=768 unbiased",
    )
    ln, peer = get(unb, "lnprobe"), get(unb, "pytorch-cka")
    goals = [("unbiased 13x13 <= 1.3x Gram floor", ln["secs"] / ln["floor"], 1.3, "<=")]
    if peer:
        goals.append(("unbiased 13x13 >= 4x pytorch-cka", peer["secs"] / ln["secs"], 4.0, ">="))
    p64, ref64 = get(pair64, "lnprobe linear_cka float64"), get(pair64, "NumPy")
    goals.append(("pair n=64 d=4096 <= 2x NumPy Gram reference", p64["secs"] / ref64["secs"], 2.0, "<="))
    goals.append(
        ("pair n=8192 d=768 float32 <= 0.2 s", get(big, "lnprobe linear_cka float32")["secs"], 0.2, "<=")
    )
    worst = max(r["err"] for r in rows if r["name"].startswith("lnprobe"))
    goals.append(("every lnprobe result within 1e-6 of float64", worst, 1e-6, "<="))
    print("-- goals")
    for name, value, target, op in goals:
        met = value <= target if op == "<=" else value >= target
        print(f"{name:48} {value:10.3g}  {'met' if met else 'NOT met'}")


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


STAGES = (
    ("lnprobe.capture:Capture.run", "capture"),
    ("lnprobe.probes.similarity.run:_update", "metric accumulation"),
    ("lnprobe.probes.similarity.run:_summarise", "bootstrap + summary"),
    ("lnprobe.probes.similarity.run:_write", "writing + figures"),
)


def _watch(spent: dict) -> list:
    """Wrap each stage's function with a stopwatch adding into `spent`; returns the originals to restore."""
    import importlib

    originals = []
    for where, key in STAGES:
        module, _, attr = where.partition(":")
        owner = importlib.import_module(module)
        if "." in attr:
            cls, attr = attr.split(".")
            owner = getattr(owner, cls)
        original = getattr(owner, attr)

        def wrapped(*args, _fn=original, _key=key, **kw):
            start = time.perf_counter()
            try:
                return _fn(*args, **kw)
            finally:
                spent[_key] += time.perf_counter() - start

        setattr(owner, attr, wrapped)
        originals.append((owner, attr, original))
    return originals


def accumulation_share(runs: int = 2) -> None:
    """(e) `lnprobe similarity` (defaults: cka + cosine, 64 examples in minibatches of 8, bootstrap 200) on
    the tiny model, with stopwatches around capture (`Capture.run`), metric accumulation (`_update`: every
    accumulator's `update`), the summary (bootstrap intervals) and the writing (JSON, figures)."""
    from lnprobe.data.synth import SynthConfig, write_synth
    from lnprobe.models import TinyConfig, save_tiny
    from lnprobe.probes import ProbeInputs
    from lnprobe.probes.similarity.config import SimilarityConfig
    from lnprobe.probes.similarity.run import run_similarity

    print("\n== (e) lnprobe similarity, tiny model, 64 examples, minibatches of 8: share of wall time ==")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synth(Path(tmp) / "data", SynthConfig(n=80, seed=0)) / "instruct.json"
        ckpt = save_tiny(Path(tmp) / "tiny", TinyConfig(seed=0))
        inputs = ProbeInputs(data=str(data), n=64, batch_size=8, progress=False)
        for run in range(runs):
            cfg = SimilarityConfig(a=str(ckpt), inputs=inputs, out=str(Path(tmp) / f"out-{run}"))
            spent = dict.fromkeys(dict(STAGES).values(), 0.0)
            originals = _watch(spent)
            try:
                start = time.perf_counter()
                run_similarity(cfg)
                wall = time.perf_counter() - start
            finally:
                for owner, attr, original in originals:
                    setattr(owner, attr, original)
            shares = " | ".join(f"{k} {v / wall:5.1%}" for k, v in spent.items())
            other = 1 - sum(spent.values()) / wall
            print(f"run {run + 1}: wall {wall:.2f} s | {shares} | other (loading) {other:5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="only (d), the GPU mode")
    parser.add_argument("--peers", help="python of the peers' venv (benchmarks/peers_env.sh)")
    parser.add_argument("--slow-peers", action="store_true", help="also ckatorch and torch-cka (~80 s)")
    parser.add_argument("--reps", type=int, default=50, help="capture-overhead repetitions")
    parser.add_argument("--reps-cka", type=int, default=3, help="CKA repetitions (median)")
    parser.add_argument("--only", choices=["a", "b", "c", "e"], help="one part only")
    args = parser.parse_args()
    if args.gpu_only:
        return gpu()
    parts = {
        "a": lambda: capture_overhead(args.reps),
        "b": lambda: cka_report(args),
        "c": minibatch_memory,
        "e": accumulation_share,
    }
    for key, part in parts.items():
        if args.only in (None, key):
            part()
    if args.gpu:
        gpu()


def cka_report(args) -> None:
    rows = cka_cases(args.peers, args.slow_peers, args.reps_cka)
    print_cka(rows)
    cka_goals(rows)


if __name__ == "__main__":
    main()
