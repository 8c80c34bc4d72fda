"""Reading the text files users hand to lnprobe (data, configs, manifests, answer files): every way such a
file can fail to read or parse becomes one `InputError` naming the file (and line), never a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lnprobe.errors import InputError


def read_text(path: str | Path, what: str = "file") -> str:
    """UTF-8 text of `path`; InputError for a missing/unreadable file, a directory or non-UTF-8 bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start]:#04x})") from None


def parse_json(text: str, where: str) -> Any:
    """JSON value of `text`; InputError '<where>: malformed JSON ...' for syntax errors, integers past
    Python's digit limit, nesting too deep to parse."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: malformed JSON at line {exc.lineno} ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # e.g. "Exceeds the limit (4300 digits) ..."
        raise InputError(f"{where}: unreadable JSON ({problem(exc)})") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    return parse_json(read_text(path, what), str(path))


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    import yaml

    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}" if mark else ""
        why = one_line(exc.problem or exc.context or "")
        raise InputError(f"{path}: malformed YAML{at} ({why})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: malformed YAML ({one_line(exc)})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer past Python's digit limit
        raise InputError(f"{path}: unreadable YAML ({problem(exc)})") from None


_DIGITS = re.compile(r"limit \((\d+) digits\).*has (\d+) digits")


def problem(exc: BaseException) -> str:
    """What a parser's exception says went wrong, as a short phrase on one line: an integer past Python's
    digit limit and nesting past the recursion limit are named; anything else is `one_line` of it."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    digits = _DIGITS.search(str(exc))
    if digits:
        return f"an integer with {digits[2]} digits; Python reads at most {digits[1]}"
    return one_line(exc)


def one_line(message: BaseException | str, limit: int = 160) -> str:
    """An exception's message (or a text) as one line: its first line, joined to the next while it ends
    in ':' ("Validation error for field 'x':" + the reason below it); past `limit` characters cut at a word
    boundary, with "...". An empty message gives the exception's type name."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return type(message).__name__ if isinstance(message, BaseException) else ""
    text = lines.pop(0)
    while text.endswith(":") and lines:
        text += " " + lines.pop(0)
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "..."
