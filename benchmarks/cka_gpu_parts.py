"""Where the time of `cka_matrix(..., matmul_dtype=torch.float32)` goes on a GPU (33 x 4096 x 4096):
centring, the streamed Gram products for column blocks of 4096, 2048, 1024 and 512 (lower triangle; biased
and unbiased), the
chunked pair products, at TF32 and full float32 precision, plus the whole call. Diagnostic for
benchmarks/similarity_cost.py (d).

    python benchmarks/cka_gpu_parts.py
"""

from __future__ import annotations

import statistics
import time

import torch

from lnprobe.probes.similarity.hsic import _gram_space, centred


def timed(fn, reps: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    feats = [torch.randn(4096, 4096, device="cuda", generator=gen) for _ in range(33)]
    print(f"== cka_matrix float32 parts, 33 x 4096 x 4096, {torch.cuda.get_device_name()} ==")

    def centre():
        for t in feats:
            t.float() - t.mean(0, dtype=torch.float64).float()

    print(f"centring (float64 mean, one pass)     {timed(centre):7.2f} ms")
    for precision in ("high", "highest"):
        torch.set_float32_matmul_precision(precision)
        stack = torch.stack(feats)
        ms = timed(lambda s=stack: torch.bmm(s, s.transpose(1, 2)))
        print(f"plain bmm Grams, {precision:8}            {ms:7.2f} ms")
        del stack
        for rows in (4096, 2048, 1024, 512):
            for debiased in (False, True):

                def run(rows=rows, debiased=debiased):
                    mats, _ = centred(feats, torch.float32)
                    return _gram_space(mats, debiased, rows)

                ms = timed(run)
                print(f"Gram space rows={rows}, debiased={debiased!s:5}, Grams {precision:8} {ms:7.2f} ms")
    flat = torch.randn(33, 4096 * 4096, device="cuda")
    parts = flat.view(33, -1, 4096).transpose(0, 1)
    for precision in ("high", "highest"):
        torch.set_float32_matmul_precision(precision)
        ms = timed(lambda: torch.bmm(parts, parts.transpose(1, 2)).double().sum(0))
        print(f"pair products, chunked bmm, {precision:8}   {ms:7.2f} ms")
        ms = timed(lambda: flat @ flat.T)
        print(f"pair products, one mm, {precision:8}        {ms:7.2f} ms")
    torch.set_float32_matmul_precision("highest")


if __name__ == "__main__":
    main()
