"""Chat templates (LLaVA's, and ChatML), chosen by name. A template renders a conversation into text
segments, each flagged as a training target (assistant answers) or context (everything else, masked with
-100). `EOS` (`</s>`) in a template's text stands for the tokenizer's own end-of-sequence token: the encoder
(`lnprobe.data.llava.Encoder`) writes that token there, so a tokenizer whose EOS is not `</s>` (SmolLM2's
is `<|im_end|>`) ends each answer with one EOS token, not with the three pieces `</`, `s`, `>`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lnprobe.errors import InputError
from lnprobe.registry import Registry

Segments = list[tuple[str, bool]]  # (text, is_target)
Turn = tuple[str, str]  # (human message, assistant answer)
EOS = "</s>"  # the tokenizer's end-of-sequence token (see the module docstring)

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAMA2_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)


@dataclass(frozen=True)
class Template:
    name: str
    render: Callable[[list[Turn]], Segments]
    summary: str


TEMPLATES: Registry[Template] = Registry("template")


def _vicuna_v1(turns: list[Turn]) -> Segments:
    """`SYSTEM USER: q ASSISTANT: a</s>USER: q2 ASSISTANT: a2</s>` (LLaVA conv_vicuna_v1)."""
    out: Segments = [(VICUNA_SYSTEM + " ", False)]
    for human, answer in turns:
        out += [(f"USER: {human} ASSISTANT:", False), (f" {answer}</s>", True)]
    return out


def _chat(turns: list[Turn]) -> Segments:
    """`USER: q ASSISTANT: a</s>USER: q2 ASSISTANT: a2</s>`: vicuna_v1 without its system prompt (the CPU
    miniature's template: the prompt would triple its sequence length)."""
    out: Segments = []
    for human, answer in turns:
        out += [(f"USER: {human} ASSISTANT:", False), (f" {answer}</s>", True)]
    return out


def _llama_2(turns: list[Turn]) -> Segments:
    """`[INST] <<SYS>>\\nsys\\n<</SYS>>\\n\\nq [/INST] a </s><s>[INST] q2 [/INST] a2 </s>` (LLaVA llama_2)."""
    out: Segments = []
    for i, (human, answer) in enumerate(turns):
        prefix = f"[INST] <<SYS>>\n{LLAMA2_SYSTEM}\n<</SYS>>\n\n" if i == 0 else "<s>[INST] "
        out += [(f"{prefix}{human} [/INST]", False), (f" {answer} </s>", True)]
    return out


def _chatml(turns: list[Turn]) -> Segments:
    """`<|im_start|>user\\nq<|im_end|>\\n<|im_start|>assistant\\na<|im_end|>\\n...` (ChatML: SmolLM2, Qwen2
    instruct models), with no system prompt; the answer and its end-of-turn token are the targets."""
    out: Segments = []
    for human, answer in turns:
        out += [(f"<|im_start|>user\n{human}<|im_end|>\n<|im_start|>assistant\n", False),
                (f"{answer}<|im_end|>", True), ("\n", False)]  # fmt: skip
    return out


def _plain(turns: list[Turn]) -> Segments:
    """Pre-training: the image, then the caption (LLaVA conv_plain drops the human text)."""
    if len(turns) != 1:
        raise InputError(f"template 'plain' takes one caption per record, got {len(turns)} turns")
    human, caption = turns[0]
    image = "<image>" if "<image>" in human else ""
    return [(image, False), (f"{caption}\n", True)]


TEMPLATES.add(
    "vicuna_v1", Template("vicuna_v1", _vicuna_v1, "Vicuna v1 / LLaVA-1.5 (USER: ... ASSISTANT: ...)")
)
TEMPLATES.add("chat", Template("chat", _chat, "vicuna_v1 without the system prompt (the CPU miniature)"))
TEMPLATES.add("llama_2", Template("llama_2", _llama_2, "LLaMA-2-chat ([INST] ... [/INST])"))
TEMPLATES.add("chatml", Template("chatml", _chatml, "ChatML without a system prompt (SmolLM2, Qwen2)"))
TEMPLATES.add("plain", Template("plain", _plain, "connector pre-training: <image> + caption"))
