"""What a benchmark is: a reader of its official files, a prompt, a default image folder, a scorer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lnprobe.registry import Registry
from lnprobe.textio import parse_json, read_text
from lnprobe.textio import read_json as read_json  # re-exported for the benchmark readers


@dataclass(frozen=True)
class EvalItem:
    id: str  # unique within the benchmark
    image: str | None  # relative to the image folder
    question: str  # what the prompt's {question} becomes ("" for captions)
    reference: Any  # the benchmark's ground truth (label, answers, captions)
    meta: dict = field(default_factory=dict)  # split, subtask, answer type ...


@dataclass(frozen=True)
class Bench:
    name: str
    summary: str
    read: Callable[[Path], list[EvalItem]]  # --data → items; InputError for files of another benchmark
    images: Callable[[Path], Path]  # --data → default image folder
    prompt: str  # the human turn after "<image>\n"; {question} is replaced
    max_new_tokens: int
    score: Callable[[list[EvalItem], list[str]], dict]  # → {"scores": {...}, "items": [per-item extras]}
    headline: tuple[str, ...]  # keys of "scores" printed by the CLI
    extra_files: Callable[[list[EvalItem], list[str]], dict[str, Any]] | None = None  # name → JSON


BENCHES: Registry[Bench] = Registry("benchmark")


def folder(data: Path) -> Path:
    """`--data` itself when it is a folder, else the folder of the file."""
    return data if data.is_dir() else data.parent


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, value) for each non-empty line."""
    lines = read_text(path).splitlines()
    return [(no, parse_json(line, f"{path}: line {no}")) for no, line in enumerate(lines, 1) if line.strip()]
