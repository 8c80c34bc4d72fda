"""`lnprobe pretrain vision`: a CLIP vision tower pre-trained contrastively on image-caption pairs (CLIP's
objective: symmetric InfoNCE between the tower's pooled, projected image embedding and a caption embedding,
with a learned temperature). The caption encoder is a small transformer over a word tokenizer, used only
here; the result is the vision tower with its image processor, for `lnprobe assemble --vision`.

Data: a LLaVA file of captioned images (the synthetic task's `pretrain.json`: one record per image whose
answer is its caption)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lnprobe.pretrain.config import VisionPretrainConfig


class CaptionEncoder(nn.Module):
    """Word embeddings + learned positions -> one transformer layer -> mean over the caption's tokens."""

    def __init__(self, vocab: int, width: int, out: int, length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(length, width))
        self.layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.proj = nn.Linear(width, out, bias=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.layer(self.embed(ids) + self.pos[: ids.shape[1]], src_key_padding_mask=mask == 0)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.proj(pooled)


def captions(path: Path, image_folder: str | None) -> tuple[list[Path], list[str], list[str]]:
    """(image paths, captions, the records' names) of a LLaVA file whose records each hold an image and its
    caption."""
    from lnprobe.data.llava import read_records
    from lnprobe.errors import InputError

    root = Path(image_folder) if image_folder else path.parent
    records = read_records(path)
    images, texts, wheres = [], [], []
    for r in records:
        if not r.image:
            raise InputError(f"{path}: record {r.index} (id {r.id}) has no image to pre-train on")
        images.append(root / r.image)
        texts.append(r.turns[0][1])
        wheres.append(f"{path} record {r.index}, id {r.id}")
    return images, texts, wheres


def pixels(processor, images: list[Path], wheres: list[str]) -> torch.Tensor:
    """Every image decoded once (the first broken one named with its record) and preprocessed."""
    from lnprobe.data.images import decode
    from lnprobe.errors import InputError

    rgb = []
    for image, where in zip(images, wheres, strict=True):
        try:
            rgb.append(decode(image))
        except InputError as exc:
            raise InputError(f"{exc} ({where})") from None
    return processor(images=rgb, return_tensors="pt")["pixel_values"]


def pretrain_vision(cfg: VisionPretrainConfig) -> dict:
    """Train, save to cfg.out (tower, image processor, config, loss curve); returns {'losses', 'out'}."""
    import transformers
    from transformers import CLIPVisionModel

    from lnprobe.io import Output
    from lnprobe.models.hf import quiet_transformers
    from lnprobe.models.tiny import build_tokenizer
    from lnprobe.pretrain.loop import fit, save
    from lnprobe.pretrain.text import encode

    inputs = (cfg.vision, cfg.data, cfg.image_folder)
    output = Output(Path(cfg.out), "pretrain vision", force=cfg.force, inputs=inputs)
    output.check()
    images, texts, wheres = captions(Path(cfg.data), cfg.image_folder)
    with quiet_transformers():
        processor = transformers.CLIPImageProcessor.from_pretrained(cfg.vision)
        tower = CLIPVisionModel.from_pretrained(cfg.vision, dtype=torch.float32)
        pix = pixels(processor, images, wheres)
    tokenizer = build_tokenizer(kind="words", image_token=False)
    ids, mask = encode(tokenizer, texts, 64)
    torch.manual_seed(cfg.seed)
    width = tower.config.hidden_size
    text = CaptionEncoder(len(tokenizer), width, width, ids.shape[1])
    image_proj = nn.Linear(width, width, bias=False)
    log_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), CLIP's initial temperature
    tower.train()

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        img = nn.functional.normalize(image_proj(tower(pixel_values=pix[batch]).pooler_output), dim=-1)
        txt = nn.functional.normalize(text(ids[batch], mask[batch]), dim=-1)
        logits = log_scale.clamp(max=4.6052).exp() * img @ txt.T
        target = torch.arange(len(batch))
        return (
            nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
        ) / 2

    params = [*tower.parameters(), *text.parameters(), *image_proj.parameters(), log_scale]
    losses = fit(params, loss_of, len(images), cfg.steps, cfg.batch_size, cfg.lr, cfg.seed,
                 "vision pre-training", cfg.progress)  # fmt: skip
    save(output, cfg, tower.eval(), processor, losses)
    return {"losses": losses, "out": cfg.out}
