"""The miniature's pre-trained backbones: a text LLM and a CLIP vision tower, pre-trained once on their own
world (a synthetic data seed no miniature run uses) and shipped inside the package, as the paper starts from
a downloaded Vicuna and CLIP. `lnprobe pretrain backbones OUT` (and `make backbones`) rebuilds them: data,
then `lnprobe pretrain vision`, then `lnprobe pretrain text`, each with its own checkpoint.

Why shipped: the LLM must first learn to answer from descriptions fed as one vector per sentence (what
its image tokens will be). That takes ~3000 steps, 10 minutes on 2 cores (the build prints the held-out text
accuracy: 1.00 per question type), twice the demo's whole budget; `lnprobe demo --pretrain` pre-trains
small ones inside the run instead (they do not learn enough in its budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from lnprobe.config import at_least, option, positive, ranged, seed_field, validate
from lnprobe.io import claim_dir

SHIPPED = Path(__file__).parent / "weights"
QTYPES = ("the-colour", "the-shape", "the-place")  # the miniature's question types (one shape per picture)
MAX_SHAPES = 1


@dataclass(frozen=True)
class BackbonesConfig:
    out: str = option(help="Directory to build them in (data/, vision/, llm/; a finished step is reused).")
    # the backbones' world: miniature runs use seeds 0, 1, 2, ...
    seed: int = seed_field(1000, "Seed of the backbones' synthetic world (miniature runs use 0, 1, 2, ...).")
    images: int = at_least(20, 2000, "Pictures for the vision tower.")
    text_scenes: int = at_least(0, 5000, "Extra scenes described in words only, for the LLM.")
    vision_steps: int = at_least(1, 400, "Vision pre-training steps.")
    text_steps: int = at_least(1, 3000, "Text pre-training steps.")
    text_lr: float = positive(3e-3, "Text pre-training learning rate.")
    compress: float = ranged(
        0.8, 0, 1, help="Share of chat lines whose context sentences are fed as one vector each."
    )
    progress: bool = option(True, "Show progress bars.")

    def __post_init__(self) -> None:
        validate(self)


def shipped(part: str) -> str:
    """The shipped backbone `part` ('llm' or 'vision')."""
    return str(SHIPPED / part)


def build_backbones(cfg: BackbonesConfig) -> dict:
    """Data, vision tower, text LLM under cfg.out (each a step with its own folder; a finished one is
    reused); returns {'llm', 'vision', 'data', 'text_accuracy'}."""
    from lnprobe.data.synth import SynthConfig, write_synth

    out = Path(cfg.out)
    claim_dir(out, "pretrain backbones")  # a new folder, or this command's earlier one to continue
    data = out / "data"
    if not (data / "text.jsonl").is_file():
        synth = SynthConfig(n=cfg.images, seed=cfg.seed, eval_fraction=0.05, val_fraction=0.0,
                            text_scenes=cfg.text_scenes, qtypes=QTYPES, max_shapes=MAX_SHAPES)  # fmt: skip
        write_synth(data, synth, overwrite=True)
    vision = pretrained_vision(out, data, cfg.vision_steps, cfg.seed, cfg.progress)
    llm = pretrained_llm(
        out, data, cfg.text_steps, cfg.seed, cfg.progress, lr=cfg.text_lr, compress=cfg.compress
    )
    scores = text_accuracy(llm, seed=cfg.seed + 1)
    (out / "text_accuracy.json").write_text(json.dumps(scores, indent=1) + "\n")
    return {"llm": llm, "vision": vision, "data": str(data), "text_accuracy": scores}


def _fresh(out: Path, part: str, seed: int) -> Path:
    """OUT/init-PART: an untrained tower of the miniature's shape ('lm' or 'vision'), made once."""
    from lnprobe.miniature.config import SHAPE
    from lnprobe.models.tiny import save_tiny_part

    path = out / f"init-{part}"
    if not (path / "config.json").is_file():
        save_tiny_part(path, replace(SHAPE, seed=seed), part, overwrite=True)
    return path


def pretrained_vision(out: Path, data: Path, steps: int, seed: int, progress: bool) -> str:
    """OUT/vision: a fresh tower pre-trained contrastively on DATA/pretrain.json (once; reused after)."""
    from lnprobe.pretrain.vision import VisionPretrainConfig, pretrain_vision

    done = out / "vision"
    if not (done / "config.json").is_file():
        pretrain_vision(VisionPretrainConfig(
            vision=str(_fresh(out, "vision", seed)), data=str(data / "pretrain.json"), out=str(done),
            steps=steps, seed=seed, progress=progress, force=True))  # fmt: skip
    return str(done)


def pretrained_llm(out: Path, data: Path, steps: int, seed: int, progress: bool, **options) -> str:
    """OUT/llm: a fresh LLM pre-trained on DATA/text.jsonl (once; reused after); `options` are further
    TextPretrainConfig fields (lr, compress)."""
    from lnprobe.pretrain.text import TextPretrainConfig, pretrain_text

    done = out / "llm"
    if not (done / "config.json").is_file():
        pretrain_text(TextPretrainConfig(
            llm=str(_fresh(out, "lm", seed)), data=str(data / "text.jsonl"), out=str(done), steps=steps,
            seed=seed, progress=progress, force=True, **options))  # fmt: skip
    return str(done)


def text_accuracy(llm: str | Path, seed: int, n: int = 300) -> dict[str, float]:
    """Per question type, the share of `n` fresh scenes (seeded) whose question the LLM answers exactly
    (teacher-forced argmax of every answer token and the EOS), the scene's sentences fed compressed (one
    mean-embedding vector each) as image tokens will be."""
    import random
    from collections import defaultdict

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lnprobe.data.synth import _scene, caption, question
    from lnprobe.models.hf import quiet_transformers
    from lnprobe.pretrain.text import _compressed, tokenize

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(llm))
        model = AutoModelForCausalLM.from_pretrained(str(llm), dtype=torch.float32).eval()
    rng, hits = random.Random(seed), defaultdict(list)
    for i in range(n):
        items, qtype = _scene(rng, MAX_SHAPES), QTYPES[i % len(QTYPES)]
        q, a = question(items, qtype, rng)
        ids, spans, labels = tokenize(tokenizer, f"USER: {caption(items)} {q} ASSISTANT: {a}</s>")
        with torch.no_grad():
            x, labels = _compressed(model.get_input_embeddings(), ids, spans, labels, 1.0, rng)
            pred = model(inputs_embeds=x[None]).logits[0, :-1].argmax(-1)
        gold = torch.tensor(labels[1:])
        hits[qtype].append(bool((pred[gold != -100] == gold[gold != -100]).all()))
    return {k: sum(v) / len(v) for k, v in hits.items()}
