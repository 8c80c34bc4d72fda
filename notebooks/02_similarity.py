# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Representation similarity: the metrics, then cross-layer similarity of tiny checkpoints
#
# The paper's second mechanism: LN-tuned models have *lower cross-layer similarity*. lnprobe measures it as
# the mean over off-diagonal pairs of a layer x layer similarity matrix. Runs on CPU in seconds.

# %%
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, display

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, save_tiny
from lnprobe.probes import PROBES, ProbeInputs, cosine_similarity, linear_cka, random_baseline
from lnprobe.probes.similarity import SimilarityConfig
from lnprobe.train import TrainConfig, train

scratch = tempfile.TemporaryDirectory(prefix="lnprobe-nb-")  # removed in the last cell
work = Path(scratch.name)

# %% [markdown]
# ## The metrics are pure functions of two `[n, d]` matrices
# Linear CKA is invariant to rotations and isotropic scaling; the biased estimator is far from 0 even for
# unrelated features (its random baseline), the unbiased one is not.

# %%
gen = torch.Generator().manual_seed(0)
x = torch.randn(64, 256, generator=gen, dtype=torch.float64)
q, _ = torch.linalg.qr(torch.randn(256, 256, generator=gen, dtype=torch.float64))
noise = torch.randn(64, 256, generator=gen, dtype=torch.float64)
print("CKA(X, 3 X Q)        =", round(linear_cka(x, 3 * x @ q), 6))
print("CKA(X, noise) biased =", round(linear_cka(x, noise), 3), "| random baseline", round(float(random_baseline(x, noise)), 3))
print("CKA(X, noise) unbiased =", round(linear_cka(x, noise, debiased=True), 3))
print("mean cosine(X, X + noise) =", round(cosine_similarity(x, x + noise), 3))

# %% [markdown]
# ## A tiny base model and an LN-tuned version of it

# %%
data = write_synth(work / "data", SynthConfig(n=40, seed=0))
base = save_tiny(work / "base", TinyConfig(seed=0))
result = train(TrainConfig(model=str(base), regime="ln", data=str(data / "instruct.json"), out=str(work / "ln"),
                           lr=1e-2, max_steps=10, batch_size=8, progress=False))
print("LN-tuned checkpoint:", result.checkpoint)

# %% [markdown]
# ## Cross-layer similarity within each model, and the per-layer diagonal between them
# Rows are text tokens (image tokens sit at another scale and would dominate a linear kernel).

# %%
inputs = ProbeInputs(data=str(data / "eval.json"), n=16, batch_size=4, progress=False)  # the same inputs for every probe
similarity = PROBES.get("similarity")
for name, spec in (("base", base), ("ln", result.checkpoint)):
    rec = similarity.run(SimilarityConfig(a=str(spec), inputs=inputs, out=str(work / f"sim-{name}"), tokens="text"))
    s = rec.metrics["cka"]["cross_layer_mean"]
    print(f"{name:5} cross-layer CKA {s['value']:.4f}  95% CI [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]")
pair = similarity.run(SimilarityConfig(a=str(base), b=str(result.checkpoint), inputs=inputs, out=str(work / "sim-pair"),
                                       tokens="text"))
print("per-layer CKA base vs ln:", [round(v, 3) for v in pair.metrics["cka"]["diagonal"]])
display(Image(filename=work / "sim-ln" / "similarity_cka.png"))  # cross-layer CKA of the LN-tuned model
display(Image(filename=work / "sim-pair" / "similarity_cka.png"))  # base x LN-tuned, layer by layer

# %%
scratch.cleanup()  # nothing is left behind in the temporary folder
