"""The app every command registers on, the consoles they print to, and the one place errors become exit
codes: bad input (a missing checkpoint, an unknown regime, an out-of-range flag, ...) prints one line
`lnprobe: error: ...` and exits 2; an unexpected internal error prints its traceback and exits 1."""

from __future__ import annotations

import sys
import traceback

import typer
from rich.console import Console

from lnprobe.cli.options import Group
from lnprobe.errors import InputError

console = Console(width=None if sys.stdout.isatty() else 120)
wide_console = Console(width=None if sys.stdout.isatty() else 140)  # the miniature's tables

app = typer.Typer(
    cls=Group,
    name="lnprobe",
    help="Train LayerNorm-tuned, LoRA and fully-finetuned multi-modal LLMs, then probe why LN tuning works.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def group(name: str, help: str) -> typer.Typer:
    """A command group `lnprobe NAME ...` on the app."""
    sub = typer.Typer(cls=Group, help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


# typer >= 0.26 vendors click; older releases raise click's own exceptions
_USAGE_ERRORS: tuple[type[Exception], ...] = (getattr(typer, "TyperException", InputError),)
try:
    import click

    _USAGE_ERRORS += (click.ClickException,)
except ImportError:  # pragma: no cover
    pass


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps bad input to exit 2 with one line, internal errors to exit 1."""
    try:
        result = app(args=argv, prog_name="lnprobe", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("lnprobe: aborted", file=sys.stderr)
        return 130
    except _USAGE_ERRORS as exc:  # unknown option, missing argument, bad value
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if not message:  # bare `lnprobe`: help was printed
            return 0
        print(f"lnprobe: error: {message}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"lnprobe: error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print("lnprobe: internal error (please report it with the traceback above)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0  # --help in non-standalone mode returns 0


def run() -> None:
    sys.exit(main())
