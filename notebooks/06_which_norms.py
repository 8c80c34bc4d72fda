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
# # Which norms carry the adaptation?
#
# The causal layer of lnprobe (issue 18): patch tuned norm weights into the base one norm at a time
# (`lnprobe patch`), patch norm *outputs* at image or text tokens only, and train with only a subset of the
# norms (`norms:input`, `norms@0-1`, ...). A planted control first shows the method finds a known answer.
# Runs on CPU in about a minute on the tiny model.

# %%
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, display

from lnprobe.data.synth import SynthConfig, write_synth
from lnprobe.models import TinyConfig, load, save_tiny
from lnprobe.probes import PROBES, ProbeInputs
from lnprobe.probes.patch import PatchConfig
from lnprobe.train import TrainConfig, train

scratch = tempfile.TemporaryDirectory(prefix="lnprobe-nb-")  # removed in the last cell
work = Path(scratch.name)
data = write_synth(work / "data", SynthConfig(n=60, seed=0))
base = save_tiny(work / "base", TinyConfig(seed=0))
inputs = ProbeInputs(data=str(data / "eval.json"), n=8, batch_size=4, progress=False)

# %% [markdown]
# ## A planted control: only layer 2's norms differ from the base
# Patching must attribute the whole change to layer 2; below it nothing can be recovered, and the final norm's
# output at the text tokens carries everything the answers see.

# %%
planted = load(base)
with torch.no_grad():
    planted.model.get_submodule(planted.sites.input_norms[2]).weight.mul_(3.0)
    planted.model.get_submodule(planted.sites.post_attention_norms[2]).weight.mul_(0.3)
planted.model.save_pretrained(work / "planted")
planted.processor.save_pretrained(work / "planted")
rec = PROBES.get("patch").run(PatchConfig(base=str(base), tuned=str(work / "planted"), inputs=inputs,
                                          out=str(work / "patch-planted"), bootstrap=200))
for row in rec.units:
    f = row["into_base"]["recovered"]
    print(f"{row['unit']:18} recovered {f['value']:+.3f}  95% CI {f['ci95']}")

# %% [markdown]
# ## An LN-tuned model: which norms, and through which tokens?

# %%
ln = train(TrainConfig(model=str(base), regime="ln", data=str(data / "instruct.json"), eval_data=str(data / "eval.json"),
                       out=str(work / "ln"), lr=1e-2, max_steps=30, batch_size=8, progress=False))
print(f"held-out loss {ln.eval_loss:.3f}, answer accuracy {ln.eval_accuracy:.3f}")
rec = PROBES.get("patch").run(PatchConfig(base=str(base), tuned=str(ln.checkpoint), inputs=inputs,
                                          out=str(work / "patch-ln"), bootstrap=200))
print("loss base", round(rec.losses["base"], 3), "tuned", round(rec.losses["tuned"], 3), "| other tensors the regime changed:", rec.other_changed)
print("best single norm:", rec.summary["best_unit"], round(rec.summary["best_recovered"], 3))
for tokens, best in rec.summary["activations_best"].items():
    print(f"norm output patched at {tokens:5} tokens: best {best['unit']} ({best['recovered']:+.3f})")
display(Image(filename=work / "patch-ln" / "patch.png"))
display(Image(filename=work / "patch-ln" / "patch_tokens.png"))

# %% [markdown]
# ## How much do text tokens attend to the image, per layer and head? (`lnprobe attention`)
# The share of each text token's attention that lands on image tokens, base and LN-tuned, and their paired
# difference with a bootstrap interval over examples.

# %%
from lnprobe.probes.attention import AttentionConfig

att = PROBES.get("attention").run(AttentionConfig(models=(f"base={base}", f"ln={ln.checkpoint}"), inputs=inputs,
                                                  out=str(work / "attention"), bootstrap=200))
for label, m in att.models.items():
    print(f"{label:5} mean share on image tokens {m['mean']['value']:.4f}  CI {m['mean']['ci95']}")
for label, d in att.differences.items():
    print(f"{label}: {d['mean']['value']:+.4f}  CI {d['mean']['ci95']}")
display(Image(filename=work / "attention" / "attention.png"))

# %% [markdown]
# ## What can a linear read-out find in the tokens? (`lnprobe linprobe`)
# Cross-validated logistic regression per layer, before and after each input norm: image vs text tokens
# (chance 0.5) and the picture's attributes from its image tokens (against the majority class).

# %%
from lnprobe.probes.linprobe import LinprobeConfig

more = ProbeInputs(data=str(data / "instruct.json"), n=40, batch_size=8, progress=False)  # attributes need examples
lin = PROBES.get("linprobe").run(LinprobeConfig(models=(f"base={base}", f"ln={ln.checkpoint}"), inputs=more,
                                                out=str(work / "linprobe"), folds=4))
for row in lin.results:
    if row["layer"] == 0 and row["site"] == "out":
        print(f"{row['model']:4} {row['probe']:18} accuracy {row['accuracy']:.3f} CI [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]"
              f"  chance {row['chance']:.3f}")
print(lin.notes)
display(Image(filename=work / "linprobe" / "linprobe.png"))

# %% [markdown]
# ## How few norms suffice? Train with norm subsets only
# Atoms compose (`lnprobe regimes` lists them): only the input norms, only the post-attention norms, only the
# norms of layers 0-1, all of them. On this random tiny base, norms alone barely move the loss in 20 steps
# (the `ln` run above learned mostly through its embeddings and head: see `other tensors`); for a real
# answer run the same regimes in the paper miniature, e.g.
# `lnprobe study --regimes ln,full,norms:input,norms:post --centre-lr norms:input=0.03 --centre-lr norms:post=0.03`.

# %%
for regime in ("norms:input", "norms:post", "norms@0-1", "norms"):
    r = train(TrainConfig(model=str(base), regime=regime, data=str(data / "instruct.json"), eval_data=str(data / "eval.json"),
                          out=str(work / regime.replace(":", "-").replace("@", "-")), lr=3e-2, max_steps=20, batch_size=8,
                          progress=False))
    print(f"{regime:12} held-out loss {r.eval_loss:.3f}  accuracy {r.eval_accuracy:.3f}")

# %%
scratch.cleanup()  # nothing is left behind in the temporary folder
