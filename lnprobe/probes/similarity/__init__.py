"""The similarity probe: layer x layer CKA / cosine within one checkpoint or between two.

config.py   SimilarityConfig (ProbeInputs + what to compare)
metrics.py  the metric registry (`cka` = unbiased HSIC, `cka_biased`, `rbf_cka`, `cosine`, `mutual_knn`,
            `procrustes`) and the single-pair estimators
hsic.py     the linear-HSIC engine (Gram or feature space, whichever is cheaper)
knn.py      mutual k-nearest-neighbour alignment (Huh et al. 2024)
procrustes.py  the Procrustes shape similarity / angular distance (Williams et al. 2021)
null.py     the permutation null of layer x layer linear CKA
stats.py    the streaming layer x layer accumulators (minibatch CKA, cosine, per-minibatch means),
            bootstrap intervals
run.py      the runner: capture, accumulate, summarise, write
"""

from lnprobe.probes.registry import PROBES, Probe
from lnprobe.probes.similarity.config import SimilarityConfig

PROBES.add(
    "similarity",
    Probe(
        SimilarityConfig,
        "lnprobe.probes.similarity.run:run_similarity",
        "layer x layer CKA / cosine within one checkpoint or between two",
    ),
)

__all__ = ["SimilarityConfig"]
