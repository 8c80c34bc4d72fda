"""Peak memory of `lnprobe assemble` against the size of the weights it joins (the claim: one copy of the
weights, so a 7B LLM + CLIP ViT-L fits in 24 GiB). Builds a mid-size Llama LM (bf16) and a CLIP vision
model, then runs the assembly in a fresh process and reports its peak RSS over the process's baseline.

    python benchmarks/assemble_memory.py [--hidden 2048 --layers 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, threading, time
import psutil
from lnprobe.models.assemble import AssembleConfig, assemble
import lnprobe.models.load  # imports done before the baseline
proc, peak, done = psutil.Process(), [0], threading.Event()
def sample():  # resident set, file-backed (mmapped safetensors) pages included
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)
base = proc.memory_info().rss
thread = threading.Thread(target=sample)
thread.start()
assemble(AssembleConfig(llm=sys.argv[1], vision=sys.argv[2], out=sys.argv[3], connector="linear"))
done.set()
thread.join()
print(json.dumps({"baseline_mib": base / 2**20, "peak_mib": peak[0] / 2**20}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from lnprobe.models.tiny import TinyConfig, build_processor, build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok = build_tokenizer(512, image_token=False)
        config = LlamaConfig(
            hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4, num_hidden_layers=args.layers,
            num_attention_heads=16, num_key_value_heads=16, vocab_size=32000, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        with torch.device("cpu"):
            llm = LlamaForCausalLM(config).to(torch.bfloat16)
        llm.save_pretrained(root / "llm")
        tok.save_pretrained(root / "llm")
        llm_bytes = sum(p.numel() * p.element_size() for p in llm.parameters())
        del llm
        vision_config = CLIPVisionConfig(
            hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4, image_size=64
        )
        vision = CLIPVisionModel(vision_config)
        vision.save_pretrained(root / "clip")
        build_processor(TinyConfig(image_size=64, patch_size=8)).image_processor.save_pretrained(
            root / "clip"
        )
        vis_bytes = sum(p.numel() * p.element_size() for p in vision.parameters())
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(root / "llm"), str(root / "clip"), str(root / "out")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(done.stdout.strip().splitlines()[-1])
        weights_mib = (llm_bytes + vis_bytes) / 2**20
        grown = row["peak_mib"] - row["baseline_mib"]
        print(
            f"weights {weights_mib:.0f} MiB (LLM bf16 {llm_bytes / 2**20:.0f} MiB, vision "
            f"{vis_bytes / 2**20:.0f} MiB) | assemble peak RSS growth {grown:.0f} MiB = "
            f"{grown / weights_mib:.2f}x the weights"
        )


if __name__ == "__main__":
    main()
