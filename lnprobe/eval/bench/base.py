"""What a benchmark is: a reader of its official files, a prompt, a default image folder, a scorer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lnprobe.errors import InputError
from lnprobe.registry import Registry


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


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed JSON ({exc})") from None


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line number, value) for each non-empty line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not text ({exc.reason})") from None
    out = []
    for no, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append((no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {no}: malformed JSON ({exc.msg})") from None
    return out
