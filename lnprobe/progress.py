"""Progress bars on the loops a user waits for."""

from __future__ import annotations

from collections.abc import Iterable


def tracked(items: Iterable, enabled: bool, description: str, **options) -> Iterable:
    """`items`, shown with a rich progress bar (`rich.progress.track`, `options` passed on) when `enabled`."""
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, **options)
