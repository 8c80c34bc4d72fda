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
# # The claims, one by one, from the demo's results
#
# Reads `runs/demo` if `make demo` has run (set `DEMO` to another results directory), else runs the demo
# at its smoke scale (every stage, a few steps each: nothing learns) in a temporary directory first (under
# a minute).

# %%
import json
import os
import tempfile
from pathlib import Path

from IPython.display import Image, display

from lnprobe.miniature.demo import run_demo
from lnprobe.miniature.config import SMOKE, MiniatureConfig

DEMO = Path(os.environ.get("DEMO", "../runs/demo"))
if not (DEMO / "claims" / "claims.json").is_file():
    scratch = tempfile.TemporaryDirectory(prefix="lnprobe-nb-")  # removed in the last cell
    DEMO = Path(scratch.name) / "demo"
    # the smoke scale with the two regimes the claims compare: every stage runs, nothing learns
    run_demo(DEMO, MiniatureConfig(**SMOKE, regimes=("ln", "full")))
claims = json.loads((DEMO / "claims" / "claims.json").read_text())
rows = json.loads((DEMO / "demo_results.json").read_text())

# %% [markdown]
# ## The regimes

# %%
for r in rows:
    pct = "-" if r["trainable_pct"] is None else f"{r['trainable_pct']:.3f} %"
    print(f"{r['regime']:28} trainable {pct:>10}  accuracy {r['accuracy']:.3f}  cross-layer CKA {r['cross_layer_cka']:.3f}")

# %% [markdown]
# ## Each claim: the statistic, the numbers, the verdict

# %%
for claim in claims["claims"]:
    print(f"== {claim['statement']}")
    print("   statistic:", claim["definition"])
    for name, test in claim["tests"].items():
        if isinstance(test, dict):
            print(f"   {name}: {test['verdict']} ({test['reason']})")
    print("   VERDICT:", claim["verdict"], "\n")

# %% [markdown]
# ## Caveats and provenance

# %%
for note in claims["caveats"]:
    print("-", note)
print("git", claims["provenance"].get("git_sha"), "| seed", claims["provenance"].get("seed"))
print("full report:", DEMO / "claims" / "report.html")
display(Image(filename=DEMO / "claims" / "probes" / "similarity-ln" / "similarity_cka.png"))

# %%
if "scratch" in globals():
    scratch.cleanup()  # nothing is left behind in the temporary folder
