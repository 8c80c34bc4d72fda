"""Typed configs: frozen dataclasses that round-trip through JSON and are saved beside outputs."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lnprobe.errors import InputError
from lnprobe.provenance import provenance

C = TypeVar("C")

CONFIG_FILE = "lnprobe_config.json"


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Build `cls` from a dict, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{source}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in data
    ]
    if missing:
        raise InputError(f"{source}: missing field(s) {', '.join(missing)} for {cls.__name__}")
    return cls(**data)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping of config fields (a saved lnprobe_config.json: its `config`); the fields are
    checked when the config is built."""
    from lnprobe.textio import read_json, read_yaml

    path = Path(path)
    data = read_json(path, "config") if path.suffix == ".json" else read_yaml(path, "config")
    if not isinstance(data, dict):
        raise InputError(f"{path}: config must be a mapping of field: value")
    return data.get("config", data)


def save_config(config: Any, out_dir: str | Path, **extra: Any) -> Path:
    """Write `config` with provenance to OUT_DIR/lnprobe_config.json; returns the path."""
    path = Path(out_dir) / CONFIG_FILE
    record = {
        "config_type": type(config).__name__,
        "config": to_dict(config),
        "provenance": provenance(**extra),
    }
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


# -- declared ranges ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: `lo <= x` (`lo < x` when `lo_open`), likewise `hi`."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def ok(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def text(self) -> str:
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {num(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {num(self.hi)}")
        return " and ".join(parts)


# -- command-line metadata ---------------------------------------------------------------------------------
# A config field's help text and how it appears on the command line live in its metadata, so a command's
# options are generated from its config (`lnprobe.cli.options`):
#   help        the flag's help text
#   positional  an argument (`lnprobe gradvar CKPT`) rather than an option
#   flags       the option's names when they are not the field's (`("--metric", "-m")` for `metrics`)
#   switch      a bool given as a bare `--force` (no `--no-force`)
#   sep         a tuple given as one separated string (`--qtypes colour,shape`)
#   metavar     the argument's or value's name in `--help` and errors (`CKPT_A`, `NAME=SPEC`)
CLI_KEYS = frozenset({"positional", "flags", "switch", "sep", "metavar"})


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    default_factory: Any = dataclasses.MISSING,
    **cli: Any,
):
    """A dataclass field with its help text and command-line metadata (see CLI_KEYS)."""
    return _field(default, {}, help, cli, default_factory)


def _field(default: Any, metadata: dict, help: str, cli: dict, default_factory: Any = dataclasses.MISSING):
    unknown = sorted(set(cli) - CLI_KEYS)
    if unknown:
        raise TypeError(f"unknown command-line metadata {unknown} (known: {sorted(CLI_KEYS)})")
    metadata = {**metadata, **cli, **({"help": help} if help else {})}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def ranged(
    default: Any = dataclasses.MISSING, lo=None, hi=None, *, lo_open=False, hi_open=False, help="", **cli
):
    """A dataclass field whose value must lie in the range (None always passes: 'not set')."""
    return _field(default, {"range": Range(lo, hi, lo_open, hi_open)}, help, cli)


def positive(default: Any = dataclasses.MISSING, help: str = "", **cli):
    """> 0 (and finite, as every float field)."""
    return ranged(default, 0, lo_open=True, help=help, **cli)


def at_least(lo: float, default: Any = dataclasses.MISSING, help: str = "", **cli):
    return ranged(default, lo, help=help, **cli)


def choice(default: Any, options: tuple[str, ...], help: str = "", **cli):
    """One of `options`."""
    return _field(default, {"choices": tuple(options)}, help, cli)


SEED = (0, 2**32 - 1)  # numpy's and every framework's seed range


def seed_field(default: int = 0, help: str = "Seed.", **cli):
    return ranged(default, *SEED, help=help, **cli)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_for(field: dataclasses.Field) -> str:
    """How the command line names `field`: its first flag, its argument's name, or `--field-name`."""
    if field.metadata.get("flags"):
        return field.metadata["flags"][0]
    if field.metadata.get("positional"):
        return field.metadata.get("metavar") or field.name.upper()
    return flag_of(field.name)


def _kind_ok(value: Any, hint: Any) -> bool:
    """Does `value` fit the type hint (int is not bool; float takes int; tuple takes list)?"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return any(_kind_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, tuple | list) and all(
            _kind_ok(v, args[0]) for v in value if args and args[0] is not Ellipsis
        )
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(
            _kind_ok(k, args[0]) and _kind_ok(v, args[1]) for k, v in value.items() if args
        )
    return True  # other hints are not checked here


def _kind_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and (typing.get_origin(hint) is typing.Union or isinstance(hint, types.UnionType)):
        return " or ".join(_kind_name(a) for a in args)
    return names.get(hint, "a list" if typing.get_origin(hint) in (tuple, list) else str(hint))


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints(cls)`, evaluated once per class (the annotations are strings)."""
    return typing.get_type_hints(cls)


def validate(config: Any) -> None:
    """Check every field of a config dataclass against its type hint, finiteness (every float) and its
    declared range; InputError names the flag: `--lr-norm -0.001: must be > 0`. Called first in each
    config's `__post_init__`, so every command and the Python API apply the same rules before anything
    is written."""
    hints = type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint, flag = getattr(config, f.name), hints.get(f.name), flag_for(f)
        if hint is not None and not _kind_ok(value, hint):
            raise InputError(f"{flag} {value!r}: expected {_kind_name(hint)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{flag} {value}: must be a finite number")
        rng, options = f.metadata.get("range"), f.metadata.get("choices")
        if rng is not None and value is not None and not rng.ok(value):
            raise InputError(f"{flag} {value!r}: must be {rng.text()}")
        if options is not None and value is not None and value not in options:
            raise InputError(f"{flag} {value!r}: must be one of {', '.join(options)}")
