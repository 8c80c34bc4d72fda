#!/usr/bin/env bash
# `make real-study` on a lent GPU (issue 30): the same study (SmolLM2-135M-Instruct + the shipped vision
# tower + easy-VQA, chatml, python-docs forgetting), at the scale the CPU version cuts: every seed sweeps its
# own learning rates, 5 seeds, 4x the steps, 4x the training images, 3x the held-out images. Training runs on
# CUDA by itself (`--device auto` in every stage). Results under $OUT (default runs/real-study-gpu): its
# study.md and study.json, and stage timings per seed; copy the numbers into benchmarks/RESULTS.md.
#   bash benchmarks/real_study_gpu.sh            # ~8 min on one H200 (estimate from the CPU stage times)
# Set SCALE=cpu to run it at `make real-study`'s scale instead (a check that the script runs).
set -eu
out=${OUT:-runs/real-study-gpu}
data=${DATA:-$out-data}
py=${PYTHON:-.venv/bin/python}
lnprobe=${LNPROBE:-.venv/bin/lnprobe}
export PYTHONUNBUFFERED=1
if [ "${SCALE:-gpu}" = cpu ]; then
  images="--train-images 1000 --eval-images 30 --val-fraction 0.02"
  settings="--seeds 3 --pick-once --finetune-steps 60 --connector-steps 40 --batch-size 8 --probe-n 16 --bootstrap 100"
else
  images="--train-images 4000 --eval-images 100 --val-fraction 0.02"
  settings="--seeds 5 --finetune-steps 240 --connector-steps 160 --batch-size 16 --probe-n 32 --bootstrap 200 --parallel 1"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
test -f "$data/eval.json" || $lnprobe data easy-vqa "$data" $images
start=$(date +%s)
$lnprobe study --out "$out" --llm "$($py -m lnprobe.models.gguf smollm2)" \
  --data "$data/train.json" --val-data "$data/val.json" --eval-data "$data/eval.json" \
  --pretrain-data "$data/captions.json" --template chatml --text-eval python-docs \
  --connector-lr 1e-3 --lora-rank 8 --centre-lr full=3e-5 --centre-lr ln=1e-3 --centre-lr ln-simp=3e-3 \
  --centre-lr lora=1e-3 --centre-lr connector=1e-3 $settings
echo "study wall seconds: $(( $(date +%s) - start ))"
for t in "$out"/seed-*/timings.json; do echo "$t: $(tr -d '\n ' < "$t")"; done
