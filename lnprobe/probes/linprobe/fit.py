"""The linear-probe estimator and the PCA view (numpy + scikit-learn, no model).

`cross_validated(X, y, groups, folds, seed)`: logistic regression on standardised features (the scaler fit
on each training fold only), scored on held-out folds that never split a group (an example): every row gets
one out-of-fold prediction, and the accuracy is the share of rows predicted right, with a 95 % Wilson score
interval whose sample size is the effective one: smaller when groups hold several rows (`effective_n`,
Kish's design effect from the cluster-robust variance of the accuracy), and divided by Nadeau & Bengio's
correction for the overlap of the folds' training sets (`refit_inflation`). Definitions: docs/statistics.md.

`pca2(X)`: the first two principal-component coordinates of the centred rows and their explained variance.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


def wilson(correct: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion `correct / n` (`n` may be an effective, non-integer
    sample size)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def effective_n(hits: np.ndarray, groups: np.ndarray) -> float:
    """The effective sample size of the accuracy `mean(hits)` when rows come in groups: n times the
    binomial variance p(1-p)/n over the cluster-robust variance G/(G-1) * sum_g (c_g - p n_g)^2 / n^2
    (c_g hits and n_g rows of group g), never more than n; n itself when every group holds one row or
    either variance is 0."""
    n = hits.size
    _, index, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    g = sizes.size
    if sizes.max() == 1 or g < 2:
        return float(n)
    p = hits.mean()
    c = np.bincount(index, weights=hits.astype(float), minlength=g)
    robust = g / (g - 1) * float(((c - p * sizes) ** 2).sum()) / n**2
    binomial = p * (1 - p) / n
    if robust <= 0 or binomial <= 0:
        return float(n)
    return float(min(n, n * binomial / robust))


def group_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """(train, test) row indices of `folds` folds that never split a group, classes stratified as far as
    the groups allow (scikit-learn's StratifiedGroupKFold, shuffled with `seed`)."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class rarer than `folds` examples: stratification is partial
        warnings.filterwarnings("ignore", category=UserWarning)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y, groups)]


def refit_inflation(folds: int) -> float:
    """Nadeau & Bengio's (2003) variance correction for K-fold estimates, as a factor on the variance of
    the pooled accuracy: the fold accuracies are correlated (their training sets overlap), so the variance
    of their mean is (1/K + n_test/n_train) sigma^2 = (1/K + 1/(K-1)) sigma^2, not sigma^2 / K: a factor of
    1 + K / (K - 1) (2.25 at K = 5). Conservative: under shuffled labels the corrected 95 % intervals held
    chance 98-99 % of the time, the uncorrected ones 86-90 % (docs/statistics.md)."""
    return 1 + folds / (folds - 1) if folds > 1 else 1.0


def _predict(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, c: float) -> np.ndarray:
    """Predictions on `test` of a logistic regression fit on `train` (standardised on `train`); a training
    fold holding one class predicts that class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y[train])
    if classes.size == 1:
        return np.full(test.size, classes[0])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    with warnings.catch_warnings():  # convergence on separable data: the predictions are what counts
        warnings.filterwarnings("ignore")
        model.fit(X[train], y[train])
        return model.predict(X[test])


def cross_validated(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: int,
    seed: int,
    c: float = 1.0,
    splits: list[tuple[np.ndarray, ...]] | None = None,
) -> dict:
    """{accuracy, ci95, n, n_eff, correct, majority}: out-of-fold accuracy of a logistic-regression probe
    of labels `y` `[n]` from features `X` `[n, d]`, folds grouped by `groups` `[n]` (`splits`: the folds
    of `group_folds(y, groups, folds, seed)` when already drawn); `majority` is the share of the most
    common label (the accuracy of always guessing it)."""
    X = np.asarray(X, dtype=np.float64)
    predicted = np.empty(len(y), dtype=y.dtype)
    splits = splits or group_folds(y, groups, folds, seed)
    for train, test in splits:
        predicted[test] = _predict(X, y, train, test, c)
    hits = predicted == y
    n_eff = effective_n(hits, groups) / refit_inflation(len(splits))
    accuracy = float(hits.mean())
    _, counts = np.unique(y, return_counts=True)
    return {
        "accuracy": accuracy,
        "ci95": list(wilson(accuracy * n_eff, n_eff)),
        "n": int(len(y)),
        "n_eff": n_eff,
        "correct": int(hits.sum()),
        "majority": float(counts.max() / len(y)),
    }


def balanced_rows(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of an equal number of rows of each label (the rarest label's count, at most
    `per_class`), drawn without replacement with `seed`: chance is 1 / number of labels."""
    rng = np.random.default_rng(seed)
    values = np.unique(labels)
    take = min(per_class, *(int((labels == v).sum()) for v in values))
    picked = [rng.choice(np.flatnonzero(labels == v), take, replace=False) for v in values]
    return np.sort(np.concatenate(picked))


def pca2(X: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """(`[n, 2]` coordinates of the centred rows on the first two principal axes, the share of the
    variance each explains), by scikit-learn's PCA (full SVD)."""
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64)
    k = min(2, *X.shape)
    pca = PCA(n_components=k, svd_solver="full").fit(X)
    coords = pca.transform(X)
    if k < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - k)))
    return coords, [float(v) for v in pca.explained_variance_ratio_]
