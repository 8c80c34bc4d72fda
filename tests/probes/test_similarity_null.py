"""The permutation null of layer x layer linear CKA against planted answers."""

import numpy as np
import pytest
import torch

from lnprobe.errors import InputError
from lnprobe.probes import MinibatchCKA, off_diagonal_mean
from lnprobe.probes.similarity import null as null_module
from lnprobe.probes.similarity.hsic import hsic_pairs
from lnprobe.probes.similarity.null import PermutationNull


def rand(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def minibatches(kind, batches=6, n=48, d=12, layers=3):
    """Independent random layers ("independent"), or every layer a rotated, scaled copy of the first
    plus a little noise ("identical")."""
    out = []
    for b in range(batches):
        first = rand(n, d, 100 * b)
        if kind == "independent":
            out.append([first] + [rand(n, d, 100 * b + i) for i in range(1, layers)])
        else:
            q = torch.linalg.qr(rand(d, d, 7))[0]
            out.append([first] + [2.0 * first @ q + 0.05 * rand(n, d, 100 * b + i) for i in range(1, layers)])
    return out


def run(batches, debiased=True, permutations=4, seed=0):
    acc, null = MinibatchCKA(debiased), PermutationNull(permutations, debiased, seed)
    acc.null = null
    for layers in batches:
        acc.update(layers)
    m = acc.compute()
    off = ~torch.eye(m.shape[0], dtype=torch.bool)
    return m, null, null.summary(m, off_diagonal_mean, pairs=off, draws=300)


def test_independent_layers_score_within_their_null():
    m, null, s = run(minibatches("independent"))
    reps = torch.stack([off_diagonal_mean(r) for r in null.replicates(300)])
    spread = float(reps.std())
    observed = float(off_diagonal_mean(m))
    assert abs(observed - s["cross_layer_mean"]["mean"]) < 4 * spread
    assert s["cross_layer_mean"]["p"] > 0.01
    assert abs(s["excess"]["value"]) < 4 * spread
    assert s["pairs_above_p95"] <= 0.5


def test_identical_layers_score_far_above_their_null():
    m, _, s = run(minibatches("identical"))
    summary = s["cross_layer_mean"]
    assert float(off_diagonal_mean(m)) > 0.99 > 0.2 > summary["p95"]
    assert summary["p"] == pytest.approx(1 / 301)  # no replicate reaches it: the smallest p there is
    assert s["pairs_above_p95"] == 1.0 and s["excess"]["value"] > 0.95


def test_the_debiased_null_is_centred_at_zero_and_the_biased_one_is_not():
    batches = minibatches("independent", batches=4, n=40, d=30)
    _, null, _ = run(batches, debiased=True, permutations=6)
    mean = torch.as_tensor(null.mean())
    assert mean.abs().max() < 0.02
    reps = null.replicates(300)
    assert float(reps.mean()) == pytest.approx(0.0, abs=0.01)
    _, biased, _ = run(batches, debiased=False, permutations=6)
    # the biased estimator's known offset for unrelated Gaussians, about d / (n + d) = 0.43
    assert 0.3 < float(torch.as_tensor(biased.mean()).mean()) < 0.55


@pytest.mark.parametrize("debiased", [True, False])
def test_gram_path_equals_hsic_of_permuted_rows(debiased, monkeypatch):
    """The Gram-permutation shortcut gives the HSIC of explicitly permuted rows (the streaming engine),
    which is also the fallback for minibatches whose Grams would be too large."""
    layers = [rand(30, 5, 1), rand(30, 40, 2), rand(30, 5, 1) + 0.5 * rand(30, 5, 3)]
    others = [rand(30, 7, 4), rand(30, 5, 5)]
    for ys in (None, others):
        fast = PermutationNull(3, debiased, seed=9)
        fast.update(layers, ys)
        gen = torch.Generator().manual_seed(9)
        perms = [torch.randperm(30, generator=gen) for _ in range(3)]
        side = layers if ys is None else ys
        for p, perm in enumerate(perms):
            xy, xx, yy = hsic_pairs(layers, [y[perm] for y in side], debiased)
            scale = torch.sqrt(torch.outer(xx, yy))  # CKA units: float32 products, float64 sums
            assert ((fast.terms[0][0][p] - xy).abs() / scale).max() < 1e-6
            assert torch.allclose(fast.terms[0][1], xx, rtol=1e-6) and torch.allclose(
                fast.terms[0][2], yy, rtol=1e-6
            )
        monkeypatch.setattr(null_module, "GRAM_BYTES", 0)
        slow = PermutationNull(3, debiased, seed=9)
        slow.update(layers, ys)
        monkeypatch.undo()
        assert ((fast.terms[0][0] - slow.terms[0][0]).abs() / scale).max() < 1e-6
        for a, b in zip(fast.terms[0][1:], slow.terms[0][1:], strict=True):
            assert torch.allclose(a, b, rtol=1e-6)


def test_float32_products_keep_a_large_offset_exact_enough():
    """Layers with a large common offset and small spread (features are centred in float64 before the
    Grams, so nothing of the offset reaches the float32 products)."""
    base = rand(64, 10, 20)
    layers = [1e4 + base, 1e4 + base + 0.1 * rand(64, 10, 21)]
    fast = PermutationNull(2, seed=3)
    fast.update(layers)
    gen = torch.Generator().manual_seed(3)
    for p in range(2):
        perm = torch.randperm(64, generator=gen)
        xy, xx, yy = hsic_pairs(layers, [y[perm] for y in layers])
        assert ((fast.terms[0][0][p] - xy).abs() / torch.sqrt(torch.outer(xx, yy))).max() < 1e-6


def test_replicates_are_every_choice_when_few_and_seeded_draws_otherwise():
    batches = minibatches("independent", batches=3)
    _, null, _ = run(batches, permutations=3)
    every = null.replicates(draws=27)
    assert every.shape[0] == 27  # 3 permutations ^ 3 minibatches
    assert torch.allclose(every.mean(0), null.mean(), atol=1e-12)  # the exact null mean
    drawn = null.replicates(draws=20, seed=5)
    assert drawn.shape[0] == 20 and torch.equal(drawn, null.replicates(draws=20, seed=5))
    _, again, _ = run(batches, permutations=3)
    assert torch.equal(torch.stack([t[0] for t in again.terms]), torch.stack([t[0] for t in null.terms]))


def test_two_models_summarise_the_diagonal():
    xs = [[rand(40, 8, 10 * b + i) for i in range(3)] for b in range(4)]
    ys = [
        [x + 0.1 * rand(40, 8, 500 + 10 * b + i) for i, x in enumerate(layers)] for b, layers in enumerate(xs)
    ]
    acc, null = MinibatchCKA(), PermutationNull(4)
    acc.null = null
    for x, y in zip(xs, ys, strict=True):
        acc.update(x, y)
    m = acc.compute()
    eye = torch.eye(3, dtype=torch.bool)
    s = null.summary(m, lambda a: torch.diagonal(a).mean(), "diagonal_mean", (0.9, 1.0), eye)
    assert s["pairs_above_p95"] == 1.0 and s["diagonal_mean"]["p"] < 0.01
    assert s["excess"]["ci95"] == pytest.approx(
        [0.9 - s["diagonal_mean"]["mean"], 1.0 - s["diagonal_mean"]["mean"]]
    )
    assert np.array(s["mean"]).shape == (3, 3) and np.array(s["p95"]).shape == (3, 3)


def test_bad_input():
    with pytest.raises(InputError, match="permutations must be >= 1, got 0"):
        PermutationNull(0)
    with pytest.raises(InputError, match="at least 4 rows"):
        PermutationNull(2).update([rand(3, 4)])
    with pytest.raises(InputError, match="no minibatches"):
        PermutationNull(2).mean()
