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
# # Benchmark evaluation: POPE, MME, VQAv2, COCO / Flickr30k captions
#
# `lnprobe eval` reads a benchmark's official files, answers greedily in batches and scores the answers as
# the official tools do. Here each benchmark is a tiny folder in its official format with images drawn
# locally (`write_fixture`); point `data` at the real files for real numbers. Runs on CPU in seconds.

# %%
import json
import tempfile
from pathlib import Path

from lnprobe.eval.captions import caption_scores, ptb_tokenize
from lnprobe.eval.fixtures import write_fixture
from lnprobe.eval.run import EvalConfig, run_eval
from lnprobe.eval.vqa import normalize_answer, vqa_accuracy
from lnprobe.models import TinyConfig, save_tiny

scratch = tempfile.TemporaryDirectory(prefix="lnprobe-nb-")  # removed in the last cell
work = Path(scratch.name)
ckpt = str(save_tiny(work / "tiny", TinyConfig(seed=0)))

# %% [markdown]
# ## Generate and score every benchmark
# An untrained tiny model answers nonsense, so the scores are near zero; the point is the pipeline.

# %%
for bench in ("pope", "mme", "vqav2", "coco", "flickr30k"):
    data = write_fixture(bench, work / f"data-{bench}", n=3)
    record = run_eval(EvalConfig(ckpt, bench, str(data), str(work / f"eval-{bench}"), max_new_tokens=6, progress=False))
    headline = {k: v for k, v in record["scores"].items() if isinstance(v, int | float)}
    print(f"{bench:10s}", {k: round(v, 3) for k, v in headline.items()})

# %% [markdown]
# ## Every item is kept: prompt, reference, prediction, how it was parsed and scored

# %%
item = json.loads((work / "eval-pope" / "results.json").read_text())["items"][0]
print(json.dumps(item, indent=1))

# %% [markdown]
# ## The scorers are plain functions
# VQA accuracy: the answer is normalised (number words, articles, punctuation), then compared with the ten
# human answers, min(#matches / 3, 1) averaged over the ten leave-one-out sets.

# %%
answers = ["2"] * 2 + ["3"] * 8
print(normalize_answer("Two."), vqa_accuracy("Two.", answers))  # 2 of 10 humans: 0.6
print(ptb_tokenize("A man's dog, running."))
print(caption_scores({1: "a red circle", 2: "a blue square"}, {1: ["A red circle.", "a circle that is red"], 2: ["A blue square."]}))

# %% [markdown]
# ## Answers made elsewhere can be scored without a model
# Here the saved results are rescored; the official VQA results file, COCO results and LLaVA answer files
# (JSON lines with `question_id` and `text`) work the same way.

# %%
rescored = run_eval(EvalConfig(None, "vqav2", str(work / "data-vqav2"), str(work / "rescore"),
                               predictions=str(work / "eval-vqav2" / "vqav2_answers.json")))
print(rescored["scores"]["accuracy"] == json.loads((work / "eval-vqav2" / "results.json").read_text())["scores"]["accuracy"])

# %%
scratch.cleanup()  # nothing is left behind in the temporary folder
