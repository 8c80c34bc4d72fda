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


# -- the shape of a parsed JSON value ----------------------------------------------------------------------
# A shape is one of:
#   object                 anything
#   None, str, bool        null, a string, true/false
#   int, float             an integer; a number (an integer too; never true/false)
#   [s] or Array(s, ...)   an array of s (Array: of exactly `length` items, or at least `at_least`)
#   (s1, s2, ...)          one of the alternatives
#   {"key": s, "key?": s}  an object: "key" required, "key?" optional; other keys are ignored, or checked
#                          against the entry `str: s`, or allowed only when named in a `frozenset` entry
#   a function             the shape of this value (of a value's own fields, e.g. its "id")
class Array:
    """An array shape (see above)."""

    def __init__(self, item: Any, length: int | None = None, at_least: int = 0) -> None:
        self.item, self.length, self.at_least = item, length, at_least


def check_shape(value: Any, shape: Any, where: str) -> None:
    """InputError '<where>: <field>: expected ..., got ...' when `value` (parsed JSON) does not fit
    `shape`; the field is named by its path (`metrics.cka.ci95[1]`)."""
    wrong = shape_problem(value, shape)
    if wrong:
        raise InputError(f"{where}: {wrong}")


def shape_problem(value: Any, shape: Any, at: str = "") -> str | None:
    """What is wrong with `value` against `shape` (see above), or None when it fits."""
    if callable(shape) and not isinstance(shape, type):
        shape = shape(value)
    if isinstance(shape, tuple):
        return _either(value, shape, at)
    if isinstance(shape, list):
        shape = Array(shape[0])
    if isinstance(shape, Array):
        return _array(value, shape, at)
    if isinstance(shape, dict):
        return _object(value, shape, at)
    return None if _fits(value, shape) else _expected(value, _name(shape), at)


def _fits(value: Any, kind: Any) -> bool:
    if kind is object:
        return True
    if kind is None:
        return value is None
    if kind in (int, float):
        return isinstance(value, kind | int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _name(shape: Any) -> str:
    if isinstance(shape, tuple):
        return " or ".join(_name(s) for s in shape)
    if isinstance(shape, list | Array):
        n = getattr(shape, "length", None)
        return "an array" if n is None else f"an array of {n} items"
    if isinstance(shape, dict):
        return "an object"
    names = {object: "anything", None: "null", str: "a string", bool: "true or false", int: "an integer"}
    return names.get(shape, "a number")


def _shown(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict | list):
        n = len(value)
        return f"an {'object' if isinstance(value, dict) else 'array'} of {n} item{'' if n == 1 else 's'}"
    text = repr(value) if isinstance(value, str) else str(value)
    kind = "string" if isinstance(value, str) else "number"
    return f"the {kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _expected(value: Any, expected: str, at: str) -> str:
    return f"{at + ': ' if at else ''}expected {expected}, got {_shown(value)}"


def _either(value: Any, shapes: tuple, at: str) -> str | None:
    problems = [shape_problem(value, s, at) for s in shapes]
    if None in problems:
        return None
    same_kind = [p for s, p in zip(shapes, problems, strict=True) if _container(s) is type(value)]
    return same_kind[0] if len(same_kind) == 1 else _expected(value, _name(shapes), at)


def _container(shape: Any) -> type | None:
    return dict if isinstance(shape, dict) else list if isinstance(shape, list | Array) else None


def _array(value: Any, shape: Array, at: str) -> str | None:
    if not isinstance(value, list) or (shape.length is not None and len(value) != shape.length):
        return _expected(value, _name(shape), at)
    if len(value) < shape.at_least:
        return _expected(value, f"an array of at least {shape.at_least} item(s)", at)
    return next(filter(None, (shape_problem(v, shape.item, f"{at}[{i}]") for i, v in enumerate(value))), None)


def _object(value: Any, shape: dict, at: str) -> str | None:
    if not isinstance(value, dict):
        return _expected(value, "an object", at)
    named = {k.rstrip("?"): s for k, s in shape.items() if isinstance(k, str)}
    for key, s in shape.items():
        if isinstance(key, str) and not key.endswith("?") and key not in value:
            return f"{_field(at, key)}: missing (expected {_name(s)})"
    allowed = next((k for k in shape if isinstance(k, frozenset)), None)
    for key, v in value.items():
        s = named.get(key, shape.get(allowed, shape.get(str, object)))
        if key not in named and allowed is not None and key not in allowed:
            return f"{_field(at, key)}: unknown (known: {', '.join(sorted(allowed))})"
        wrong = shape_problem(v, s, _field(at, key))
        if wrong:
            return wrong
    return None


def _field(at: str, key: str) -> str:
    name = key if re.fullmatch(r"[\w-]+", key) else json.dumps(key)
    return f"{at}.{name}" if at else name
