#!/usr/bin/env bash
# The prepared GPU job (one call on a lent GPU machine): the CUDA modes of the benchmarks, each beside the
# peer baseline run in the same job. Results go to $OUT (or runs/gpu); copy the numbers into RESULTS.md.
#   PEER=path/to/peer_train_cost.py bash benchmarks/gpu_checks.sh
set -u
out=${OUT:-runs/gpu}
peer=${PEER:-../shared/reference/peer_train_cost.py}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/env.txt"
$py -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" \
  | tee -a "$out/env.txt"

echo "== similarity: all-pairs CKA on CUDA"
timeout 80 $py benchmarks/similarity_cost.py --gpu-only 2>&1 | tee "$out/similarity_gpu.txt"

echo "== peer baseline rows the goals compare against (same job, same GPU)"
timeout 180 $py - "$peer" <<'PY' 2>&1 | tee "$out/peer.jsonl"
import importlib.util, json, sys
import torch
spec = importlib.util.spec_from_file_location("peer", sys.argv[1])
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
torch.backends.cuda.matmul.allow_tf32 = True  # as the peer's main()
for size, method in (("7b", "lora"), ("7b", "ln-simp"), ("1b", "full"), ("1b", "ln")):
    try:
        print(json.dumps(peer.train_cost(size, method, "cuda", 5, 2)), flush=True)
    except Exception as e:  # an OOM is itself a result
        print(json.dumps(dict(size=size, method=method, error=repr(e)[:300])), flush=True)
        torch.cuda.empty_cache()
print(json.dumps(peer.cka_cost("cuda", 33, 4096, 4096)), flush=True)
PY

echo "== lnprobe training cost per regime"
timeout 300 $py benchmarks/train_cost.py --plan gpu 2>&1 | tee "$out/train_cost_gpu.txt"

echo "== --grad-ckpt auto: predicted vs measured peak per number of checkpointed layers (LLaVA-7B shape)"
timeout 240 $py benchmarks/grad_ckpt_plan.py --device cuda --model llava-7b --batch 16 --tokens 800 \
  --regimes ln-simp,lora --repeats 2 2>&1 | tee "$out/grad_ckpt_plan_gpu.txt"
