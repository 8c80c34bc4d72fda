"""Similarity metrics against independent formulas and invariants."""

import itertools

import numpy as np
import pytest
import torch

from lnprobe.errors import InputError
from lnprobe.probes import (
    METRICS,
    MinibatchCKA,
    cka_matrix,
    cosine_similarity,
    linear_cka,
    off_diagonal_mean,
    random_baseline,
    rbf_cka,
)
from lnprobe.probes.similarity.hsic import hsic_pairs, use_feature_space
from lnprobe.probes.similarity.metrics import _hsic_unbiased_feature, hsic_unbiased_gram


def rand(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference_cka(x, y):
    """Kornblith et al. eq. (3) with an explicit centring matrix H: tr(KHLH) / sqrt(tr(KHKH) tr(LHLH))."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def reference_unbiased_hsic(k, l_):
    """Song et al. 2012, Theorem 2, by brute force over distinct index tuples."""
    n = k.shape[0]
    t1 = sum(k[i, j] * l_[i, j] for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    t2 = sum(k[i, j] * l_[q, r] for i, j, q, r in itertools.permutations(range(n), 4)) / (
        n * (n - 1) * (n - 2) * (n - 3)
    )
    t3 = sum(k[i, j] * l_[i, q] for i, j, q in itertools.permutations(range(n), 3)) / (n * (n - 1) * (n - 2))
    return t1 + t2 - 2 * t3


@pytest.mark.parametrize("n, d", [(60, 8), (8, 60)], ids=["feature-space", "gram-space"])
def test_linear_cka_matches_the_centring_matrix_formula(n, d):
    x, y = rand(n, d, 1), rand(n, d + 3, 2) + 0.3 * rand(n, d + 3, 1)[:, : d + 3]
    assert linear_cka(x, y) == pytest.approx(reference_cka(x, y), rel=1e-10)


def test_unbiased_hsic_feature_and_gram_forms_match_the_u_statistic():
    x, y = rand(7, 3, 3), rand(7, 4, 4)
    x, y = x - x.mean(0), y - y.mean(0)
    k, l_ = (x @ x.T).numpy(), (y @ y.T).numpy()
    expected = reference_unbiased_hsic(k, l_)
    assert float(hsic_unbiased_gram(torch.tensor(k), torch.tensor(l_))) == pytest.approx(expected, rel=1e-9)
    assert float(_hsic_unbiased_feature(x, y)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("metric", ["cka", "cka_biased", "rbf_cka"])
def test_invariances(metric):
    fn = METRICS.get(metric).fn
    x = rand(40, 12, 5)
    q, _ = torch.linalg.qr(rand(12, 12, 6))
    assert fn(x, x) == pytest.approx(1.0, abs=1e-9)
    assert fn(x, x @ q) == pytest.approx(1.0, abs=1e-9)  # orthogonal transform
    y = torch.tanh(x @ rand(12, 9, 7))
    assert fn(x, 3.7 * y) == pytest.approx(fn(x, y), rel=1e-9)  # isotropic scaling
    assert fn(x, y) < 0.99  # a known-different pair


def test_debiased_removes_the_random_baseline():
    x, y = rand(64, 2048, 8), rand(64, 2048, 9)  # independent, d >> n
    assert abs(linear_cka(x, y, debiased=True)) < 0.05
    biased = linear_cka(x, y)
    assert biased > 0.9  # the biased estimator is far from 0 for unrelated features
    assert random_baseline(x, y) == pytest.approx(biased, abs=0.02)


def test_float32_with_offset_equals_float64():
    x, y = rand(64, 4096, 10), rand(64, 4096, 11)
    y = y + 0.5 * x
    exact = linear_cka(x, y, debiased=True)
    shifted = linear_cka((x + 10).float(), (y + 10).float(), debiased=True)
    assert shifted == pytest.approx(exact, abs=1e-5)
    assert linear_cka((x + 10).float().numpy(), (y + 10).float().numpy()) == pytest.approx(
        linear_cka(x, y), abs=1e-5
    )


def test_cosine_similarity():
    x = rand(10, 5, 12)
    assert cosine_similarity(x, x) == pytest.approx(1.0)
    assert cosine_similarity(x, -x) == pytest.approx(-1.0)
    e = torch.eye(4, dtype=torch.float64)
    assert cosine_similarity(e, e.roll(1, dims=1)) == pytest.approx(0.0)
    with pytest.raises(InputError, match="equal widths"):
        cosine_similarity(x, rand(10, 6))


def test_rbf_median_heuristic_is_scale_free():
    x = rand(30, 6, 13)
    y = x + 0.5 * rand(30, 6, 14)
    assert rbf_cka(10 * x, 10 * y) == pytest.approx(rbf_cka(x, y), rel=1e-9)
    assert rbf_cka(x, y, sigma=1e-3) != pytest.approx(rbf_cka(x, y), rel=1e-3)


@pytest.mark.parametrize("debiased", [True, False])
def test_minibatch_cka_with_one_batch_equals_linear_cka(debiased):
    layers_x = [rand(32, 8, s) for s in range(3)]
    layers_y = [rand(32, 5, 10 + s) + layers_x[s][:, :5] for s in range(2)]
    acc = MinibatchCKA(debiased=debiased)
    acc.update(layers_x, layers_y)
    m = acc.compute()
    assert m.shape == (3, 2)
    for i, j in itertools.product(range(3), range(2)):
        assert float(m[i, j]) == pytest.approx(
            linear_cka(layers_x[i], layers_y[j], debiased=debiased), rel=1e-9
        )


def test_minibatch_cka_averages_hsic_over_batches():
    """CKA_01 = mean_b HSIC_b(K0, K1) / sqrt(mean_b HSIC_b(K0, K0) mean_b HSIC_b(K1, K1)), batches b."""
    xs = [rand(90, 6, 0), rand(90, 6, 0) + rand(90, 6, 1)]
    acc = MinibatchCKA()
    for start in range(0, 90, 30):
        acc.update([x[start : start + 30] for x in xs])

    def hsic(a, b):
        values = []
        for start in range(0, 90, 30):
            ca, cb = (m[start : start + 30] - m[start : start + 30].mean(0) for m in (a, b))
            values.append(float(hsic_unbiased_gram(ca @ ca.T, cb @ cb.T)))
        return np.mean(values)

    expected = hsic(xs[0], xs[1]) / np.sqrt(hsic(xs[0], xs[0]) * hsic(xs[1], xs[1]))
    m = acc.compute()
    assert float(m[0, 1]) == pytest.approx(expected, rel=1e-9)
    assert float(m[1, 0]) == pytest.approx(expected, rel=1e-9)
    assert torch.allclose(torch.diagonal(m), torch.ones(2, dtype=torch.float64))
    assert float(off_diagonal_mean(m)) == pytest.approx(expected, rel=1e-9)


def test_bootstrap_interval_brackets_the_estimate():
    xs = [rand(200, 6, 20), rand(200, 6, 20) + rand(200, 6, 21)]
    acc = MinibatchCKA()
    for start in range(0, 200, 20):
        acc.update([x[start : start + 20] for x in xs])
    est = off_diagonal_mean(acc.compute())
    lo, hi = acc.bootstrap(off_diagonal_mean, draws=100)
    assert lo <= est <= hi and hi - lo < 0.5


def test_bad_inputs():
    with pytest.raises(InputError, match="X: contains NaN"):
        linear_cka(torch.tensor([[float("nan"), 1.0]] * 5), rand(5, 2))
    with pytest.raises(InputError, match="same rows"):
        linear_cka(rand(5, 2), rand(6, 2))
    with pytest.raises(InputError, match="at least 4 examples"):
        linear_cka(rand(3, 2), rand(3, 2), debiased=True)
    with pytest.raises(InputError, match="constant features"):
        linear_cka(torch.ones(6, 3), rand(6, 2))
    with pytest.raises(InputError, match="expected an \\[n, d\\] matrix"):
        linear_cka(torch.ones(6), rand(6, 2))
    with pytest.raises(InputError, match="2 minibatches"):
        acc = MinibatchCKA()
        acc.update([rand(8, 2)])
        acc.bootstrap(off_diagonal_mean)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix_equals_pairwise_cka(debiased):
    layers = [rand(40, 12, 30)]
    for s in range(1, 4):
        layers.append(torch.tanh(layers[-1] @ rand(12, 12, 30 + s)))
    m = cka_matrix(layers, debiased=debiased)
    for i, j in itertools.product(range(4), range(4)):
        assert float(m[i, j]) == pytest.approx(linear_cka(layers[i], layers[j], debiased=debiased), rel=1e-9)
    fast = cka_matrix([(x + 10).float() for x in layers], debiased=debiased, matmul_dtype=torch.float32)
    assert torch.allclose(fast, m, rtol=0, atol=2e-6)


def test_minibatch_rbf_cka_with_one_batch_equals_rbf_cka():
    layers = [rand(30, 6, 40), rand(30, 6, 40) + 0.5 * rand(30, 6, 41), rand(30, 4, 42)]
    acc = MinibatchCKA(debiased=False, kernel="rbf")
    acc.update(layers)
    m = acc.compute()
    for i, j in itertools.product(range(3), range(3)):
        assert float(m[i, j]) == pytest.approx(rbf_cka(layers[i], layers[j]), rel=1e-9)
    unbiased = MinibatchCKA(kernel="rbf")
    unbiased.update(layers)
    assert torch.allclose(torch.diagonal(unbiased.compute()), torch.ones(3, dtype=torch.float64))
    with pytest.raises(InputError, match="unknown kernel"):
        MinibatchCKA(kernel="poly")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cka_matrix_names_the_layer_with_nan(dtype):
    x = rand(50, 20, 6)
    y = x.clone()
    y[3, 2] = float("nan")
    with pytest.raises(InputError, match="layer 1: contains NaN"):
        cka_matrix([x, y], matmul_dtype=dtype)


def test_cka_matrix_float32_block_triangle_path_equals_float64():
    # n = 1100, d <= 70: computed in feature space since the choice is by cost (the Gram-space lower block
    # triangle at n = 1100 is covered by test_cka_matrix_float32_equals_float64_in_both_spaces)
    base = rand(1100, 40, seed=60)
    layers = [base + 10, torch.tanh(base @ rand(40, 40, seed=61)) - 5, rand(1100, 70, seed=62)]
    exact = cka_matrix(layers)
    fast = cka_matrix([x.float() for x in layers], matmul_dtype=torch.float32)
    assert torch.allclose(fast, exact, rtol=0, atol=1e-6)
    assert float(exact[0, 2]) < 0.5 < float(exact[0, 1])  # a related and an unrelated pair


def saturating_chain() -> list[torch.Tensor]:
    """A tanh chain whose offsets feed forward saturates: deep layers vary by ~1e-7 around ~3, at float32
    resolution."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 256, generator=gen)
    mix = torch.randn(256, 256, generator=gen) / 16
    layers = [x]
    for i in range(32):
        layers.append(torch.tanh(layers[-1] @ mix) + 0.1 * i)
    return layers


def test_cka_matrix_float32_survives_layers_at_float32_resolution():
    # a tanh chain whose offsets feed forward saturates: deep layers vary by ~1e-7 around ~3, at float32
    # resolution; centring in one float32 pass leaves a mean residual as large as that spread
    layers = saturating_chain()
    assert float(layers[-1].std(0).mean()) < 1e-5
    exact = cka_matrix(layers)
    assert torch.allclose(cka_matrix(layers, matmul_dtype=torch.float32), exact, rtol=0, atol=1e-6)


def numpy_unbiased_hsic(x, y):
    """Song et al. 2012, eq. (5), in NumPy float64 from raw (uncentred) Grams: K̃ = K with a zero diagonal,
    (tr(K̃L̃) + 1ᵀK̃1 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) 1ᵀK̃L̃1) / (n(n-3))."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    k, l_ = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l_, 0.0)
    n, one = k.shape[0], np.ones(k.shape[0])
    total = np.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
    return (total - 2.0 / (n - 2) * (one @ k @ l_ @ one)) / (n * (n - 3))


def numpy_cka(x, y, debiased):
    """CKA from the NumPy references: the centring-matrix formula, or the unbiased HSIC above."""
    if not debiased:
        return reference_cka(x, y)
    h = numpy_unbiased_hsic
    return h(x, y) / np.sqrt(h(x, x) * h(y, y))


SHAPES = pytest.mark.parametrize("n, d", [(24, 300), (400, 10)], ids=["n<d", "n>d"])


@SHAPES
@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_gram_and_feature_space_agree_with_an_independent_formula(n, d, debiased, dtype):
    """Both spaces, forced, and the automatic choice (Gram for n < d, features for n > d) match NumPy."""
    x = rand(n, d, 70) + 5.0  # an offset: the estimators must centre (or not need it) on their own
    y = torch.tanh(x @ rand(d, d + 7, 71) / d**0.5) + 0.3 * rand(n, d + 7, 72) - 2.0
    expected = numpy_cka(x.numpy(), y.numpy(), debiased)
    tol = 1e-10 if dtype == torch.float64 else 1e-6
    xs, ys = (x.to(dtype),), (y.to(dtype),)
    for space in ("gram", "feature"):
        xy, xx, yy = hsic_pairs(xs, ys, debiased, dtype, space=space)
        assert float(xy[0, 0] / torch.sqrt(xx[0] * yy[0])) == pytest.approx(expected, abs=tol)
    assert linear_cka(*xs, *ys, debiased=debiased, matmul_dtype=dtype) == pytest.approx(expected, abs=tol)
    assert use_feature_space(n, [d, d + 7], [(1, 0), (0, 0), (1, 1)]) == (n > d)


def test_unbiased_hsic_engine_matches_numpy_formula_in_both_spaces():
    x, y = rand(30, 50, 73) - 3.0, rand(30, 20, 74) + 1.0
    expected = numpy_unbiased_hsic(x.numpy(), y.numpy())
    for space in ("gram", "feature"):
        xy, _, _ = hsic_pairs([x], [y], True, torch.float64, space=space)
        assert float(xy[0, 0]) == pytest.approx(expected, rel=1e-9)


@SHAPES
@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_invariances_in_both_spaces_and_precisions(n, d, debiased, dtype):
    x = rand(n, d, 75)
    q, _ = torch.linalg.qr(rand(d, d, 76))
    y = torch.tanh(x @ rand(d, d, 77) / d**0.5)
    tol = 1e-9 if dtype == torch.float64 else 1e-6

    def cka(a, b):
        return linear_cka(a.to(dtype), b.to(dtype), debiased=debiased, matmul_dtype=dtype)

    assert cka(x, x @ q) == pytest.approx(1.0, abs=tol)  # orthogonal transform
    assert cka(x, 3.7 * y) == pytest.approx(cka(x, y), abs=tol)  # isotropic scaling
    assert cka(x, y) < 0.99


@SHAPES
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_unbiased_cka_of_unrelated_features_is_near_zero(n, d, dtype):
    x, y = rand(n, d, 78) + 10, rand(n, d, 79) + 10
    assert abs(linear_cka(x.to(dtype), y.to(dtype), debiased=True, matmul_dtype=dtype)) < 0.06
    m = cka_matrix([x.to(dtype), y.to(dtype)], debiased=True, matmul_dtype=dtype)
    assert abs(float(m[0, 1])) < 0.06


@pytest.mark.parametrize("n, d", [(1100, 400), (3000, 12)], ids=["gram-5-blocks", "feature"])
@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "unbiased"])
def test_cka_matrix_float32_equals_float64_in_both_spaces(n, d, debiased):
    """The all-pairs float32 path (Gram space: lower triangles streamed in column blocks of 256, the last
    one partial at n = 1100; float64 sums) within 1e-6 of float64, for both estimators."""
    base = rand(n, d, seed=80)
    mix = rand(d, d, seed=81) / d**0.5
    layers = [base + 10, torch.tanh(base @ mix) - 5, rand(n, d + 30, seed=82) * 1e-3 + 3]
    assert use_feature_space(n, [d, d, d + 30], [(i, j) for i in range(3) for j in range(i + 1)]) == (
        d < n / 9
    )
    exact = cka_matrix(layers, debiased=debiased)
    fast = cka_matrix([x.float() for x in layers], debiased=debiased, matmul_dtype=torch.float32)
    assert torch.allclose(fast, exact, rtol=0, atol=1e-6)
    assert float(exact[0, 1]) > 0.5  # a related pair
    if debiased:
        assert abs(float(exact[0, 2])) < 0.1  # and an unrelated one


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_feature_space_self_products_by_column_blocks(dtype):
    """|XᵀX|²_F from the lower triangle in 4 column blocks of unequal width (d = 259), and through the engine
    (feature space, where the self pairs take it), equal the full float64 product / the Gram space."""
    from lnprobe.probes.similarity.hsic import _self_square

    x = rand(700, 259, 90) + 3.0
    x = x - x.mean(0)
    exact = float((x.T @ x).square().sum())
    assert float(_self_square(x.to(dtype), blocks=4)) == pytest.approx(
        exact, rel=1e-12 if dtype == torch.float64 else 1e-6
    )
    y = torch.tanh(x @ rand(259, 140, 91) / 16) + 0.1 * rand(700, 140, 92)
    assert use_feature_space(700, [259, 140], [(1, 0), (0, 0), (1, 1)])
    feature = hsic_pairs([x.to(dtype)], [y.to(dtype)], True, dtype, space="feature")
    gram = hsic_pairs([x], [y], True, torch.float64, space="gram")
    for a, b in zip(feature, gram, strict=True):
        assert torch.allclose(a, b, rtol=1e-10 if dtype == torch.float64 else 1e-6, atol=0)


def test_unbiased_float32_with_a_large_offset_and_n_much_smaller_than_d():
    """The PITFALLS case (float32, +10 offset, n=64, d=4096) through the float32 products."""
    x, y = rand(64, 4096, 83), rand(64, 4096, 84)
    y = y + 0.5 * x
    exact = linear_cka(x, y, debiased=True)
    fast = linear_cka((x + 10).float(), (y + 10).float(), debiased=True, matmul_dtype=torch.float32)
    assert fast == pytest.approx(exact, abs=1e-6)
    m = cka_matrix([(x + 10).float(), (y + 10).float()], debiased=True, matmul_dtype=torch.float32)
    assert float(m[0, 1]) == pytest.approx(exact, abs=1e-6)


def test_unbiased_cka_matrix_float32_survives_layers_at_float32_resolution():
    layers = saturating_chain()
    exact = cka_matrix(layers, debiased=True)
    assert torch.allclose(cka_matrix(layers, debiased=True, matmul_dtype=torch.float32), exact, atol=1e-6)


@pytest.mark.parametrize("n, d", [(16, 64), (64, 4)], ids=["gram", "feature"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_minibatch_update_chooses_a_space_and_matches_linear_cka(n, d, dtype):
    xs = [rand(n, d, 85 + s) for s in range(3)]
    ys = [xs[s] + rand(n, d, 90 + s) for s in range(2)]
    acc = MinibatchCKA(matmul_dtype=dtype)
    acc.update([x.to(dtype) for x in xs], [y.to(dtype) for y in ys])
    m = acc.compute()
    tol = 1e-9 if dtype == torch.float64 else 1e-6
    for i, j in itertools.product(range(3), range(2)):
        assert float(m[i, j]) == pytest.approx(numpy_cka(xs[i].numpy(), ys[j].numpy(), True), abs=tol)
    with pytest.raises(InputError, match="X and Y minibatches differ in rows"):
        acc.update(xs, [y[:-1] for y in ys])


def test_float32_overflow_is_an_error_not_a_silent_nan():
    x = rand(50, 20, 95).float() * 1e30  # finite in float32; its Gram products are not
    with pytest.raises(InputError, match="overflowed"):
        cka_matrix([x, x + 1], debiased=True, matmul_dtype=torch.float32)


@pytest.mark.parametrize("metric", ["cka", "cka_biased", "rbf_cka", "cosine", "mutual_knn", "procrustes"])
def test_a_metric_name_means_one_estimator(metric):
    """The registry's single-pair function and the streaming accumulator `lnprobe similarity` runs under
    the same name agree on one minibatch (`cka` is the unbiased estimator in both)."""
    entry = METRICS.get(metric)
    layers = [rand(24, 6, 50), rand(24, 6, 50) + 0.4 * rand(24, 6, 51), rand(24, 6, 52)]
    acc = entry.accumulator()
    acc.update(layers)
    m = acc.compute()
    for i, j in itertools.product(range(3), range(3)):
        assert float(m[i, j]) == pytest.approx(entry.fn(layers[i], layers[j]), rel=1e-9, abs=1e-12)
    if metric == "cka":
        assert entry.fn(layers[0], layers[2]) == pytest.approx(
            linear_cka(layers[0], layers[2], debiased=True)
        )
