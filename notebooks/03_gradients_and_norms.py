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
# # Gradient variance and LayerNorm shift on tiny checkpoints
#
# The paper's third mechanism (LN tuning gives smaller gradient variance) and first (norms act as domain
# adapters from text to multi-modal), each measured with an explicit statistic. Runs on CPU in seconds.

# %%
import json
import tempfile
from pathlib import Path

from IPython.display import Image, display

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, save_tiny
from lnprobe.probes import PROBES, ProbeInputs
from lnprobe.probes.gradvar import GradVarConfig
from lnprobe.probes.lnshift import LnShiftConfig
from lnprobe.train import TrainConfig, train

scratch = tempfile.TemporaryDirectory(prefix="lnprobe-nb-")  # removed in the last cell
work = Path(scratch.name)
data = write_synth(work / "data", SynthConfig(n=40, seed=0))
base = save_tiny(work / "base", TinyConfig(seed=0))

# %% [markdown]
# ## Train LN-tuned and fully finetuned models, recording gradient statistics every 2 steps

# %%
runs = {}
for regime, lr in (("ln", 1e-2), ("full", 1e-3)):
    runs[regime] = train(TrainConfig(model=str(base), regime=regime, data=str(data / "instruct.json"),
                                     out=str(work / regime), lr=lr, max_steps=4, batch_size=8, gradvar_every=2,
                                     progress=False))
    last = json.loads((work / regime / "gradvar.jsonl").read_text().splitlines()[-1])
    norms = {k: v for k, v in last["groups"].items() if k.startswith("norms.")}
    print(regime, "norm-gradient variance per layer (training):", {k: f"{v['variance']:.2e}" for k, v in norms.items()})

# %% [markdown]
# ## The same statistic offline, per example, on identical inputs (nothing is updated)
# tr(Σ)/p over per-example gradients; frozen groups get gradients too, for comparison.

# %%
inputs = ProbeInputs(data=str(data / "eval.json"), n=8, batch_size=4, progress=False)  # shared by both probes
for regime, result in runs.items():
    rec = PROBES.get("gradvar").run(GradVarConfig(ckpt=str(result.checkpoint), inputs=inputs, out=str(work / f"gv-{regime}")))
    for kind, s in rec.kinds.items():
        print(f"{regime:5} {kind:6} variance {s['variance']:.3e}  noise scale {s['noise_scale']:.3g}  CI {s['variance_ci95']}")

# %% [markdown]
# ## How the LN-tuned norms moved, and the image-vs-text gap before and after each norm

# %%
shift = PROBES.get("lnshift").run(LnShiftConfig(ckpt=str(runs["ln"].checkpoint), base=str(base), inputs=inputs,
                                                out=str(work / "lnshift")))
print(json.dumps(shift.summary, indent=1))
top = sorted(shift.weights.items(), key=lambda kv: kv[1]["rel_l2"] or 0, reverse=True)[:3]
for name, s in top:
    print(f"{name}: relative change {s['rel_l2']:.4f}, cosine {s['cosine']:.5f}")
display(Image(filename=work / "lnshift" / "lnshift.png"))

# %%
scratch.cleanup()  # nothing is left behind in the temporary folder
