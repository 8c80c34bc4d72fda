"""Similarity metrics (pure tensor functions, registered) and the streaming layer x layer accumulator."""

from lnprobe.probes import cka, cosine  # noqa: F401 (register)
from lnprobe.probes.base import METRICS, Metric
from lnprobe.probes.cka import linear_cka, random_baseline, rbf_cka
from lnprobe.probes.cosine import cosine_similarity
from lnprobe.probes.minibatch import MinibatchCKA, cka_matrix, grams, hsic_matrix, off_diagonal_mean

__all__ = [
    "METRICS",
    "Metric",
    "MinibatchCKA",
    "cka_matrix",
    "cosine_similarity",
    "grams",
    "hsic_matrix",
    "linear_cka",
    "off_diagonal_mean",
    "random_baseline",
    "rbf_cka",
]
