"""Command-line options generated from a config dataclass, so `lnprobe train` takes every TrainConfig
field as a flag (`--batch-size 8`, `--grad-ckpt/--no-grad-ckpt`) without a hand-kept list."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup


class Group(TyperGroup):
    """A command group whose `--help` flag defaults to False: typer leaves it None, and coercing None (on
    every run through the group, e.g. `lnprobe train --help`) imports pydantic, a tenth of a second."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


def _base_type(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def with_dataclass_options(
    cls: type,
    helps: dict[str, str],
    config_help: str,
    extra: dict[str, tuple[Any, Any]] | None = None,
    skip: tuple[str, ...] = (),
) -> Callable:
    """Decorate `fn(config_file, values: dict, **extra)` into a typer command taking `--config FILE`, one
    option per field of `cls` (except `skip`) and the `extra` options ({name: (Annotated type, default)}).
    `values` holds only the dataclass options given on the command line."""

    def decorate(fn: Callable[..., None]) -> Callable:
        hints = typing.get_type_hints(cls)
        params = [
            inspect.Parameter(
                "config_file",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Path | None, typer.Option("--config", help=config_help)],
            )
        ]
        for name, (annotation, default) in (extra or {}).items():
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            )
        for field in dataclasses.fields(cls):
            if field.name in skip:
                continue
            base = _base_type(hints[field.name])
            flag = "--" + field.name.replace("_", "-")
            decls = [f"{flag}/--no-{flag[2:]}"] if base is bool else [flag]
            default = field.default if field.default is not dataclasses.MISSING else None
            text = helps.get(field.name, "") + (f" (default: {default})" if default not in (None, "") else "")
            option = typer.Option(*decls, help=text.strip(), show_default=False)
            params.append(
                inspect.Parameter(
                    field.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[base | None, option],
                )
            )

        def command(config_file: Path | None = None, **values: Any) -> None:
            extras = {k: values.pop(k) for k in (extra or {})}
            fn(config_file, {k: v for k, v in values.items() if v is not None}, **extras)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__doc__ = fn.__doc__
        command.__name__ = fn.__name__
        return command

    return decorate
