"""`lnprobe pretrain text`: a causal LM pre-trained on a text corpus (JSONL `{"text": ...}` lines): the
paper's Vicuna stage, in miniature. A plain line is language modelling (every token a target); a chat
line `USER: ... ASSISTANT: ...</s>USER: ...` is instruction tuning (only the answers are targets). The result
is a text-only checkpoint (model + tokenizer) for `lnprobe assemble --llm`.

Sentence compression (`compress`: the share of chat lines it applies to): in a chat line, each sentence of
the first user turn but the last (the question) is fed as ONE input vector, the mean of its
words' embeddings; nothing is predicted at those positions, the answer still is. A large LLM reads a dense
vector standing for several words, which is why a frozen LLM can learn from a linear connector's image
tokens; a miniature LLM trained on a few thousand lines cannot unless it is taught to (measured: without
it, connector pre-training of the miniature leaves the caption loss at the no-image level)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import torch

from lnprobe.errors import InputError
from lnprobe.pretrain.config import TextPretrainConfig


def read_lines(path: Path) -> list[str]:
    from lnprobe.textio import parse_json, read_text

    lines = []
    for i, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        row = parse_json(line, f"{path}:{i}")
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise InputError(f"{path}:{i}: expected a JSON object with a non-empty string 'text'")
        lines.append(row["text"])
    if not lines:
        raise InputError(f"{path}: no text lines")
    return lines


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


_TURN = re.compile(r"USER:(.*?) ASSISTANT:(.*?)(?:</s>|$)", re.S)


def tokenize(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    """(ids, spans, labels) of one line. A plain line: BOS + text + EOS, every token a target. A chat line
    `USER: q ASSISTANT: a</s>USER: q2 ASSISTANT: a2</s>...` (the `chat` template): only the answers and their
    EOS are targets (labels -100 elsewhere), and `spans` are the token spans of the first user turn's
    sentences before its last one (the context where the image will be; the question is never one)."""
    turns = _TURN.findall(text)
    if not text.startswith("USER:") or not turns or _TURN.sub("", text).strip():
        ids = [tokenizer.bos_token_id, *_ids(tokenizer, text), tokenizer.eos_token_id]
        return ids, [], [-100, *ids[1:]]
    ids, labels, spans = [tokenizer.bos_token_id, *_ids(tokenizer, "USER:")], [], []
    for k, (human, answer) in enumerate(turns):
        if k == 0:
            for sentence in re.findall(r"[^.?!]+[.?!]*", human):
                piece = _ids(tokenizer, sentence)
                spans.append((len(ids), len(ids) + len(piece)))
                ids += piece
            spans = spans[:-1]
        else:
            ids += _ids(tokenizer, "USER:") + _ids(tokenizer, human)
        ids += _ids(tokenizer, " ASSISTANT:")
        labels += [-100] * (len(ids) - len(labels))
        answer_ids = [*_ids(tokenizer, answer), tokenizer.eos_token_id]
        ids += answer_ids
        labels += answer_ids
    return ids, spans, labels


def encode(tokenizer, lines: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): BOS + text + EOS per line, right-padded, cut at max_length."""
    rows = [tokenize(tokenizer, t)[0][:max_length] for t in lines]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def pretrain_text(cfg: TextPretrainConfig) -> dict:
    """Train, save to cfg.out (model, tokenizer, config, loss curve); returns {'losses', 'out'}."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lnprobe.io import Output
    from lnprobe.models.hf import quiet_transformers
    from lnprobe.pretrain.loop import fit, save

    output = Output(Path(cfg.out), "pretrain text", force=cfg.force, inputs=(cfg.llm, cfg.data))
    output.check()
    lines = read_lines(Path(cfg.data))
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(cfg.llm)
        model = AutoModelForCausalLM.from_pretrained(cfg.llm, dtype=torch.float32)
    rows = [tokenize(tokenizer, t) for t in lines]
    rows = [(r[: cfg.max_length], [sp for sp in spans if sp[1] < cfg.max_length], lab[: cfg.max_length])
            for r, spans, lab in rows]  # fmt: skip
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    embed = model.get_input_embeddings()
    model.train()

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        pieces = [_compressed(embed, *rows[i], cfg.compress, rng) for i in batch.tolist()]
        x, labels, m = _pad(pieces, embed.embedding_dim)
        return model(inputs_embeds=x, attention_mask=m, labels=labels).loss

    losses = fit(model.parameters(), loss_of, len(lines), cfg.steps, cfg.batch_size, cfg.lr, cfg.seed,
                 "text pre-training", cfg.progress)  # fmt: skip
    save(output, cfg, model.eval(), tokenizer, losses)
    return {"losses": losses, "out": cfg.out}


def _compressed(
    embed,
    ids: list[int],
    spans: list[tuple[int, int]],
    labels: list[int],
    compress: float,
    rng: random.Random,
):
    """(input vectors, labels) of one line, its context sentences compressed with probability `compress`
    (a compressed position is never a target)."""
    vectors = embed(torch.tensor(ids))
    if not spans or rng.random() >= compress:
        return vectors, list(labels)
    out, new, i = [], [], 0
    for start, end in spans:
        out += [vectors[i:start], vectors[start:end].mean(0, keepdim=True)]
        new += [*labels[i:start], -100]
        i = end
    out.append(vectors[i:])
    return torch.cat(out), new + labels[i:]


def _pad(pieces, width: int):
    n = max(len(labels) for _, labels in pieces)
    x = torch.zeros(len(pieces), n, width)
    labels = torch.full((len(pieces), n), -100, dtype=torch.long)
    mask = torch.zeros(len(pieces), n, dtype=torch.long)
    for i, (v, lab) in enumerate(pieces):
        x[i, : len(lab)] = v
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(lab)] = 1
    return x, labels, mask
