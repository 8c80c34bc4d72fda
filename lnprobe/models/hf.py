"""Small helpers around transformers."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from transformers.utils import logging as hf_logging


def save_quietly(model, path, **kwargs) -> None:
    """`model.save_pretrained(path, **kwargs)` without transformers' shard-writing progress bar."""
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path, **kwargs)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info and warnings (e.g. the torchvision fallback notice) inside the block, and
    its progress bars too when stderr is not a terminal (logs and pipes get no carriage-return bars)."""
    old = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if bars:
            hf_logging.enable_progress_bar()
