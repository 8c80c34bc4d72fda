"""Mutual k-NN alignment and Procrustes shape similarity against their references' published definitions,
re-implemented here independently (platonic-rep's `mutual_knn` and netrep's `LinearMetric(alpha=1)` are
not installable here), and their invariants."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group
from sklearn.neighbors import NearestNeighbors

from lnprobe.errors import InputError
from lnprobe.probes import METRICS
from lnprobe.probes.similarity import procrustes as procrustes_module
from lnprobe.probes.similarity.knn import chance, mutual_knn, mutual_knn_matrix
from lnprobe.probes.similarity.procrustes import (
    procrustes_distance,
    procrustes_matrix,
    procrustes_similarity,
)


def rand(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def related(n, dx, dy, seed=0, noise=0.7):
    """Y a random linear image of X plus noise: related but not identical representations."""
    x = rand(n, dx, seed)
    return x, x @ rand(dx, dy, seed + 1) / math.sqrt(dx) + noise * rand(n, dy, seed + 2)


# ---- mutual k-NN (Huh et al. 2024) -------------------------------------------------------------------


def reference_knn_sklearn(x, y, k=10):
    """Rows' k nearest other rows by cosine distance (sklearn's kneighbors() without X leaves each query
    point out), overlap of the two neighbour sets per row / k, averaged over rows."""
    nx = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(x).kneighbors()[1]
    ny = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(y).kneighbors()[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny, strict=True)]))


def reference_knn_masks(x, y, k=10):
    """The reference's own formulation: L2-normalise rows, inner products with the diagonal pushed to a
    large negative value, the first k of a descending argsort, 0/1 neighbour masks, mean of the row-wise
    mask product / k."""

    def masks(f):
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        s = f @ f.T
        np.fill_diagonal(s, -1e8)
        idx = np.argsort(-s, axis=1)[:, :k]
        m = np.zeros_like(s)
        np.put_along_axis(m, idx, 1.0, axis=1)
        return m

    return float(((masks(x) * masks(y)).sum(1) / k).mean())


@pytest.mark.parametrize("n, dx, dy", [(120, 16, 16), (60, 8, 40), (40, 200, 30)])
def test_mutual_knn_matches_the_reference_definition(n, dx, dy):
    x, y = related(n, dx, dy, seed=n)
    ours = mutual_knn(x, y)
    assert ours == pytest.approx(reference_knn_sklearn(x.numpy(), y.numpy()), abs=1e-6)
    assert ours == pytest.approx(reference_knn_masks(x.numpy(), y.numpy()), abs=1e-6)
    assert 0.0 < ours < 1.0
    for k in (1, 5, n - 1):
        assert mutual_knn(x, y, k) == pytest.approx(reference_knn_sklearn(x.numpy(), y.numpy(), k), abs=1e-6)


def test_mutual_knn_invariances():
    x, y = related(100, 12, 20, seed=3)
    q = torch.as_tensor(ortho_group.rvs(12, random_state=0))
    base = mutual_knn(x, y)
    assert mutual_knn(x, x) == 1.0
    assert mutual_knn(x @ q, y) == pytest.approx(base, abs=1e-12)  # rotation
    assert mutual_knn(7.5 * x, 0.01 * y) == pytest.approx(base, abs=1e-12)  # isotropic scaling
    assert mutual_knn(x, y) == mutual_knn(y, x)  # symmetric


def test_mutual_knn_of_unpaired_rows_is_at_chance():
    """Rows of Y shuffled: the expected overlap is k / (n - 1) (each of a row's k neighbours in X is one of
    its k neighbours in Y with probability k / (n - 1))."""
    n, k = 200, 10
    x, y = related(n, 16, 16, seed=4, noise=0.1)
    gen = torch.Generator().manual_seed(0)
    scores = [mutual_knn(x, y[torch.randperm(n, generator=gen)], k) for _ in range(40)]
    se = np.std(scores) / np.sqrt(len(scores))
    assert abs(np.mean(scores) - chance(n, k)) < 4 * se + 1e-3
    assert chance(n, k) == k / (n - 1)
    assert mutual_knn(x, y, k) > 0.3  # the pairing kept: far above chance (0.05)


def test_mutual_knn_matrix_equals_pairwise():
    layers = [rand(50, 6, 10), rand(50, 9, 11), rand(50, 6, 10) + 0.3 * rand(50, 6, 12)]
    m = mutual_knn_matrix(layers)
    for i in range(3):
        for j in range(3):
            assert float(m[i, j]) == pytest.approx(mutual_knn(layers[i], layers[j]), abs=1e-15)
    rect = mutual_knn_matrix(layers, layers[:2])
    assert rect.shape == (3, 2) and torch.equal(rect, m[:, :2])


def test_mutual_knn_bad_input():
    with pytest.raises(InputError, match="mutual_knn with k=10 needs more than 10 rows, got 10"):
        mutual_knn(rand(10, 4), rand(10, 4))
    with pytest.raises(InputError, match="same rows"):
        mutual_knn(rand(20, 4), rand(21, 4))
    with pytest.raises(InputError, match="differ in rows"):
        mutual_knn_matrix([rand(20, 4)], [rand(21, 4)])
    with pytest.raises(InputError, match="NaN"):
        mutual_knn(rand(20, 4).fill_(float("nan")), rand(20, 4))


# ---- Procrustes (Williams et al. 2021; netrep LinearMetric(alpha=1)) ----------------------------------


def reference_procrustes_angle(x, y):
    """netrep's definition with alpha=1 (no whitening), centred columns, the narrower side zero-padded:
    the orthogonal Q minimising ‖XQ - Y‖_F (scipy), then the angle between XQ and Y in the Frobenius
    inner product."""
    x, y = x - x.mean(0), y - y.mean(0)
    d = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, d - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, d - y.shape[1])))
    q, _ = orthogonal_procrustes(x, y)
    xq = x @ q
    return float(np.arccos(np.clip((xq * y).sum() / (np.linalg.norm(xq) * np.linalg.norm(y)), -1, 1)))


@pytest.mark.parametrize("n, dx, dy", [(200, 16, 16), (80, 12, 30), (20, 60, 40), (30, 30, 30)], ids=str)
def test_procrustes_matches_the_reference_definition(n, dx, dy):
    x, y = related(n, dx, dy, seed=dx + dy)
    x = x + 3.0  # an offset that the centring removes
    angle = reference_procrustes_angle(x.numpy(), y.numpy())
    assert procrustes_distance(x, y) == pytest.approx(angle, abs=1e-6)
    assert procrustes_similarity(x, y) == pytest.approx(math.cos(angle), abs=1e-6)
    assert 0.0 < procrustes_similarity(x, y) < 1.0


def test_procrustes_invariances():
    x, y = related(90, 10, 14, seed=7)
    q = torch.as_tensor(ortho_group.rvs(10, random_state=1))
    base = procrustes_similarity(x, y)
    assert procrustes_similarity(x, x) == pytest.approx(1.0, abs=1e-12)
    assert procrustes_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert procrustes_similarity(x @ q, y) == pytest.approx(base, abs=1e-12)  # rotation / reflection
    assert procrustes_similarity(x, x @ q) == pytest.approx(1.0, abs=1e-12)
    assert procrustes_similarity(4.0 * x - 2.0, 0.1 * y + 5.0) == pytest.approx(base, abs=1e-12)
    assert procrustes_similarity(y, x) == pytest.approx(base, abs=1e-12)
    stretch = torch.diag(torch.linspace(0.1, 3.0, 10, dtype=torch.float64))
    assert procrustes_similarity(x, x @ stretch) < 0.95  # not invariant to anisotropic scaling (unlike CCA)


def test_procrustes_matrix_equals_pairwise_in_every_layout(monkeypatch):
    threads = torch.get_num_threads()
    layers = [rand(40, 8, 20), rand(40, 50, 21), rand(40, 8, 20) + 0.2 * rand(40, 8, 22), rand(40, 12, 23)]
    m = procrustes_matrix(layers)
    for i in range(4):
        for j in range(4):
            assert float(m[i, j]) == pytest.approx(procrustes_similarity(layers[i], layers[j]), abs=1e-12)
    assert torch.allclose(m, m.T) and torch.equal(torch.diagonal(m), torch.ones(4, dtype=torch.float64))
    rect = procrustes_matrix(layers[:3], layers)
    assert rect.shape == (3, 4) and torch.allclose(rect, m[:3], atol=1e-12)
    monkeypatch.setattr(procrustes_module, "ONE_THREAD_UP_TO", 0)  # the decompositions on every thread
    assert torch.allclose(procrustes_matrix(layers), m, atol=1e-12)
    assert torch.get_num_threads() == threads  # restored


def test_procrustes_bad_input():
    with pytest.raises(InputError, match="constant features"):
        procrustes_similarity(torch.ones(10, 3, dtype=torch.float64), rand(10, 3))
    with pytest.raises(InputError, match="same rows"):
        procrustes_similarity(rand(10, 3), rand(11, 3))
    with pytest.raises(InputError, match="at least 2 rows"):
        procrustes_matrix([rand(1, 3)])
    with pytest.raises(InputError, match=r"layer 1: expected an \[n, d\] matrix"):
        procrustes_matrix([rand(10, 3), torch.zeros(10)])


# ---- the registry and the streaming form ---------------------------------------------------------------


@pytest.mark.parametrize("metric", ["mutual_knn", "procrustes"])
def test_streamed_matrix_is_the_mean_of_per_minibatch_matrices(metric):
    entry = METRICS.get(metric)
    batches = [[rand(30, 6, 10 * b + i) for i in range(3)] for b in range(3)]
    acc = entry.accumulator()
    for layers in batches:
        acc.update(layers)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    for layers in batches:
        expected += torch.tensor([[entry.fn(a, b) for b in layers] for a in layers]) / 3
    assert torch.allclose(acc.compute(), expected, atol=1e-12)
    lo, hi = acc.bootstrap(lambda m: m[0, 1], draws=30)
    assert lo <= hi
    if metric == "mutual_knn":
        assert acc.random_baseline() == pytest.approx(10 / 29)
    else:
        assert acc.random_baseline() is None
