"""Commands generated from their config dataclasses: every field of the config is a flag (`--batch-size 8`,
`--grad-ckpt/--no-grad-ckpt`) or an argument, with the help text from the field's metadata, so a command's
options are its config's fields without a hand-kept list, and the command receives the built config.

How a field appears is read from its metadata (set through `lnprobe.config.option`, `at_least`, ...):
`help`, `positional` (an argument), `flags` (names other than `--field-name`), `switch` (a bare `--force`),
`sep` (a tuple given as one separated string) and `metavar`. Types: bool, int, float, str and their
`| None`; `tuple[X, ...]` (a repeatable option, or one `sep`-separated value); `dict[str, X]` (a
repeatable NAME=VALUE option, X one of str, int, float); and a nested config dataclass (a probe's
`ProbeInputs`), whose fields become flags of their own and which the command rebuilds. A field without
a default (and no per-command default) is a required argument or option, except in commands that read
`--config FILE`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lnprobe.config import flag_of, from_dict, read_config_file, type_hints
from lnprobe.errors import InputError


class Group(TyperGroup):
    """A command group whose `--help` flag defaults to False: typer leaves it None, and coercing None (on
    every run through the group, e.g. `lnprobe train --help`) imports pydantic, a tenth of a second."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


REQUIRED = inspect.Parameter.empty  # the default of an `extra` parameter that must be given


def _base_type(hint: Any) -> Any:
    """`X` of `X | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


@dataclass(frozen=True)
class Flag:
    """One field of a command's config (or of a config nested in it) on the command line."""

    name: str  # the field's name: the command function's parameter
    field: dataclasses.Field
    hint: Any  # the field's type, `| None` removed
    owner: str | None = None  # the nested config field holding it (e.g. "inputs"), else None

    @property
    def meta(self) -> typing.Mapping[str, Any]:
        return self.field.metadata

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.meta.get("flags") or (flag_of(self.name),))

    @property
    def origin(self) -> Any:
        return typing.get_origin(self.hint)

    def default(self, defaults: dict[str, Any]) -> Any:
        """The per-command default, else the field's; `dataclasses.MISSING` when there is none."""
        if self.name in defaults:
            return defaults[self.name]
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default

    def shown(self, default: Any) -> str:
        """`default` as `--help` shows it ('' for none worth showing)."""
        if default is dataclasses.MISSING or default is None or default == "" or (self.meta.get("switch")):
            return ""
        if isinstance(default, tuple | list):
            return (self.meta.get("sep") or ", ").join(
                f"{x:g}" if isinstance(x, float) else str(x) for x in default
            )
        if isinstance(default, dict):
            return ", ".join(f"{k}={v}" for k, v in default.items())
        return str(default)

    def annotation(self, help: str, required: bool) -> Any:
        """The typer parameter (type and Argument / Option) of this field."""
        metavar = self.meta.get("metavar")
        if self.meta.get("positional"):
            kind = self.hint if required else self.hint | None
            return Annotated[kind, typer.Argument(help=help, metavar=metavar, show_default=False)]
        names = self.names
        if self.hint is bool:
            if not self.meta.get("switch"):
                names = (f"{names[0]}/--no-{names[0][2:]}", *names[1:])
            kind: Any = bool
        elif self.origin is tuple and self.meta.get("sep"):
            kind = str
        elif self.origin is tuple:
            kind = list[typing.get_args(self.hint)[0]]
        elif self.origin is dict or self.hint is dict:
            kind = list[str]
        elif self.hint in (int, float, str):
            kind = self.hint
        else:
            raise TypeError(f"{self.name}: no command-line form for {self.hint!r} (skip the field)")
        option = typer.Option(*names, help=help, metavar=metavar, show_default=False)
        return Annotated[kind if required else kind | None, option]

    def convert(self, value: Any) -> Any:
        """The flag's parsed value as the field's type."""
        flag = self.names[0]
        if self.origin is tuple and self.meta.get("sep"):
            sep, kind = self.meta["sep"], typing.get_args(self.hint)[0]
            parts = [p.strip() for p in value.split(sep) if p.strip()]
            try:
                return tuple(kind(p) for p in parts)
            except ValueError:
                what = {int: "integers", float: "numbers"}.get(kind, "values")
                raise InputError(f"{flag}: expected {sep}-separated {what}, got {value!r}") from None
        if self.origin is tuple:
            return tuple(value)
        if self.origin is dict or self.hint is dict:
            kind = (typing.get_args(self.hint) or (str, str))[1]
            pairs = {}
            for item in value:
                key, sep, val = item.partition("=")
                try:
                    if not sep or not key or not val:
                        raise ValueError
                    pairs[key] = kind(val)
                except ValueError:
                    what = {int: " (an integer)", float: " (a number)"}.get(kind, "")
                    raise InputError(
                        f"{flag} {item!r}: expected {self.meta.get('metavar') or 'NAME=VALUE'}{what}"
                    ) from None
            return pairs
        return value


def config_flags(cls: type, skip: tuple[str, ...] = ()) -> list[Flag]:
    """The flags of `cls`'s fields (a nested config dataclass's fields in its place), except `skip`."""
    hints = type_hints(cls)
    flags: list[Flag] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            inner = type_hints(hint)
            flags += [
                Flag(g.name, g, _base_type(inner[g.name]), owner=f.name)
                for g in dataclasses.fields(hint)
                if g.name not in skip
            ]
        elif f.name not in skip:
            flags.append(Flag(f.name, f, _base_type(hint)))
    names = [flag.name for flag in flags]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise TypeError(f"{cls.__name__}: field(s) {clash} appear twice once nested configs are flattened")
    return flags


def config_command(
    cls: type,
    *,
    defaults: dict[str, Any] | None = None,
    helps: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
    extra: dict[str, tuple[Any, Any]] | None = None,
    config_file: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate `fn(config, **extra)` into a typer command whose arguments and options are the fields of
    `cls` (except `skip`), plus the `extra` parameters ({name: (Annotated type, default or REQUIRED)})
    and, with `config_file` (its help text), a `--config FILE` option reading a YAML/JSON mapping of the
    fields.

    The command builds `cls` from, in rising priority, the per-command `defaults` (field name → value;
    nested fields by their own name), the config file and the flags given, and calls `fn` with it. `helps`
    replaces fields' help texts for this command."""
    defaults, helps = dict(defaults or {}), dict(helps or {})
    flags = config_flags(cls, skip)
    by_name = {flag.name: flag for flag in flags}
    nested = {f.name: type_hints(cls)[f.name] for f in dataclasses.fields(cls)}
    nested = {name: kind for name, kind in nested.items() if dataclasses.is_dataclass(kind)}
    unknown = sorted(set(defaults) - set(by_name) - set(skip)) + sorted(set(helps) - set(by_name))
    reserved = sorted(set(extra or {}) & {*by_name, "config_file"})
    if unknown or reserved:
        raise TypeError(f"{cls.__name__}: unknown per-command names {unknown}, or extras clash {reserved}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        arguments, options = [], []
        for flag in flags:
            default = flag.default(defaults)
            required = default is dataclasses.MISSING and config_file is None
            shown = flag.shown(default)
            text = helps.get(flag.name, flag.meta.get("help", "")) + (f" (default: {shown})" if shown else "")
            param = inspect.Parameter(
                flag.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if required else None,
                annotation=flag.annotation(text.strip(), required),
            )
            (arguments if flag.meta.get("positional") else options).append(param)
        if config_file is not None:
            option = typer.Option("--config", help=config_file)
            options.insert(0, _param("config_file", Annotated[Path | None, option], None))
        options += [
            _param(name, annotation, default) for name, (annotation, default) in (extra or {}).items()
        ]

        def command(**values: Any) -> Any:
            path = values.pop("config_file", None)
            extras = {name: values.pop(name) for name in extra or {}}
            given = {
                name: by_name[name].convert(value)
                for name, value in values.items()
                if value is not None and value != []
            }
            return fn(build(path, given), **extras)

        def build(path: Path | None, given: dict[str, Any]) -> Any:
            top: dict[str, Any] = {}
            inner: dict[str, dict[str, Any]] = {name: {} for name in nested}

            def put(name: str, value: Any) -> None:
                owner = by_name[name].owner if name in by_name else None
                (inner[owner] if owner else top)[name] = value

            for name, value in defaults.items():
                put(name, value)
            for key, value in (read_config_file(path) if path else {}).items():
                if key in inner and isinstance(value, dict):
                    inner[key].update(value)
                else:
                    top[key] = value
            for name, value in given.items():
                put(name, value)
            source = str(path or "flags")
            for name, kind in nested.items():
                top[name] = from_dict(kind, inner[name], source=source)
            return from_dict(cls, top, source=source)

        command.__signature__ = inspect.Signature([*arguments, *options])  # type: ignore[attr-defined]
        command.__doc__ = fn.__doc__
        command.__name__ = fn.__name__
        return command

    return decorate


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
