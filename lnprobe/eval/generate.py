"""Batched greedy generation for benchmarks: each prompt is the model's chat template up to where the
answer starts (`<image>\\n` + the question as the human turn), batches are left-padded and grouped by
length (longest first, so memory runs out at once if it will), decoding stops at the end-of-sequence
token or `max_new_tokens`, and the answers come back in input order, stripped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lnprobe.data.images import decode
from lnprobe.data.llava import IMAGE, Encoder


@dataclass(frozen=True)
class Prompt:
    human: str  # the human turn, "<image>\n..." when there is an image
    image: Path | None


def _pixels(processor, paths: list[Path], dtype: torch.dtype, device) -> torch.Tensor:
    images = [decode(path) for path in paths]
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    return pixels.to(device=device, dtype=dtype)


def _batches(lengths: list[int], has_image: list[bool], batch_size: int) -> list[list[int]]:
    """Indices grouped so a batch is all-image or all-text, longest prompts first."""
    order = sorted(range(len(lengths)), key=lambda i: (has_image[i], -lengths[i]))
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and has_image[batches[-1][0]] == has_image[i]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def generate(
    model,
    processor,
    prompts: list[Prompt],
    template: str = "vicuna_v1",
    batch_size: int = 8,
    max_new_tokens: int = 16,
    progress: bool = True,
) -> list[str]:
    from rich.progress import track

    encoder = Encoder(processor, template, max_length=1 << 30)
    tok = processor.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = [encoder.encode_prompt(p.human) for p in prompts]
    for p in prompts:
        if (p.image is None) != (IMAGE not in p.human):
            raise ValueError("a prompt has an image exactly when its text holds <image>")
    device, dtype = model.device, next(model.parameters()).dtype
    out: list[str] = [""] * len(prompts)
    batches = _batches([len(r) for r in ids], [p.image is not None for p in prompts], batch_size)
    model.eval()
    for batch in track(batches, description="generating", disable=not progress):
        width = max(len(ids[i]) for i in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
            attention[row, width - len(ids[i]) :] = 1
        extra = {}
        if prompts[batch[0]].image is not None:
            extra["pixel_values"] = _pixels(processor, [prompts[i].image for i in batch], dtype, device)
        gen = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            eos_token_id=tok.eos_token_id,
            **extra,
        )
        texts = tok.batch_decode(gen[:, width:], skip_special_tokens=True)
        for i, text in zip(batch, texts, strict=True):
            out[i] = text.strip()
    return out
