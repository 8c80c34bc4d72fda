"""Reading the text files users hand to lnprobe (data, configs, manifests, answer files): every way such a
file can fail to read or parse becomes one `InputError` naming the file (and line), never a traceback."""

from __future__ import annotations

import json
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
        raise InputError(f"{where}: unreadable JSON ({str(exc).splitlines()[0][:120]})") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    return parse_json(read_text(path, what), str(path))


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    import yaml

    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: malformed YAML ({str(exc).splitlines()[0][:120]})") from None
