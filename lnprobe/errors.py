"""User-facing errors. The CLI turns an `InputError` into one line on stderr and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the user (a missing file, an unknown name, a model we cannot use).

    The message names the offending item and fits on one line; the CLI prints it without a traceback.
    """


class SitesError(InputError):
    """A model lacks a part lnprobe needs (decoder layers, norms, connector, ...)."""
