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
# # lnprobe quickstart: a model, its sites, the regimes, the parameter table
#
# Runs top to bottom on CPU in seconds with a tiny LLaVA model built from a config (nothing downloaded).

# %%
import copy
import tempfile
from pathlib import Path

from lnprobe.models import TinyConfig, build_from_config, load, resolve_config, save_tiny
from lnprobe.params import params_table, regime_report
from lnprobe.regimes import REGIMES, apply_regime

# %% [markdown]
# ## Build a tiny model, save it, load it back
# `load()` accepts HF checkpoint directories, hub ids, PEFT adapters and lnprobe delta checkpoints.

# %%
scratch = tempfile.TemporaryDirectory(prefix="lnprobe-nb-")  # removed in the last cell
path = save_tiny(Path(scratch.name) / "tiny", TinyConfig(lm="llama", connector="linear"))
loaded = load(path)
sites = loaded.sites
print(type(loaded.model).__name__, "with", sum(p.numel() for p in loaded.model.parameters()), "parameters")
print("decoder layers:", sites.num_layers)
print("norms of layer 0:", sites.layer_norms[0])
print("final norm:", sites.final_norm, "| connector:", sites.connector, "| vision tower:", sites.vision_tower)

# %% [markdown]
# ## The regimes and exactly what each trains

# %%
for name in REGIMES:
    applied = apply_regime(copy.deepcopy(loaded.model), name)
    report = regime_report(copy.deepcopy(loaded.model), name)
    print(f"{name:10} {report.trainable:>8,} params ({report.percent:5.2f} %)  e.g. {applied.trainable[0]}")

# %% [markdown]
# ## The paper's shapes, without allocating a single weight
# At LLaVA-7B shapes (linear connector, vocabulary 32000) the paper reports LayerNorm = 3.78 % and
# LayerNorm-simp. = 0.004 % of the parameters.

# %%
config = resolve_config("llava-7b")
print(f"{'regime':10} {'trainable':>15} {'%':>8} {'memory GiB':>11}")
for report in params_table(lambda: build_from_config(config), REGIMES.names()):
    print(f"{report.regime:10} {report.trainable:>15,} {report.percent:>8.4f} {report.memory.total / 2**30:>11.2f}")

# %%
scratch.cleanup()  # nothing is left behind in the temporary folder
