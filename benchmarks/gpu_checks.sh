#!/usr/bin/env bash
# The prepared GPU job (on a lent GPU machine): the CUDA modes of the benchmarks, each beside the peer
# baseline run in the same job. Results go to $OUT (or runs/gpu); copy the numbers into RESULTS.md.
#   PEER=path/to/peer_train_cost.py bash benchmarks/gpu_checks.sh [PART ...]
# PARTS (default: all, ~17 min at their time limits; one device call may run 10 min, so split it):
#   cka    all-pairs CKA 33 x 4096 x 4096 on CUDA (issue 16)                     <= 80 s
#   peer   the peer's training-cost rows the goals compare against (issue 16)    <= 180 s
#   train  lnprobe's training cost per regime (issue 3)                          <= 300 s
#   ckpt   --grad-ckpt auto at LLaVA-7B shapes (issue 16; run with peer)         <= 240 s
#   shard  --shard fsdp vs unsharded, LLaVA-1B full finetuning (issue 19)        <= 420 s
set -u
parts=" ${*:-cka peer train ckpt shard} "
want() { [[ $parts == *" $1 "* ]]; }
out=${OUT:-runs/gpu}
peer=${PEER:-../shared/reference/peer_train_cost.py}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/env.txt"
$py -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" \
  | tee -a "$out/env.txt"

want cka && echo "== similarity: all-pairs CKA on CUDA" &&
timeout 80 $py benchmarks/similarity_cost.py --gpu-only 2>&1 | tee "$out/similarity_gpu.txt"

if want peer; then
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
fi

want train && echo "== lnprobe training cost per regime" && timeout 300 $py benchmarks/train_cost.py --plan gpu 2>&1 | tee "$out/train_cost_gpu.txt"

want ckpt && echo "== --grad-ckpt auto: predicted vs measured peak per checkpointed layers (LLaVA-7B)" &&
timeout 240 $py benchmarks/grad_ckpt_plan.py --device cuda --model llava-7b --batch 16 --tokens 800 \
  --regimes ln-simp,lora --repeats 2 2>&1 | tee "$out/grad_ckpt_plan_gpu.txt"

want shard && echo "== --shard fsdp on one GPU: LLaVA-1B full finetuning vs the unsharded run (issue 19)" &&
timeout 420 $py benchmarks/shard_check.py --shape llava-1b --device cuda --steps 8 2>&1 |
  tee "$out/shard_check_gpu.txt"
