"""Lazy re-exports for packages (PEP 562): a package lists which submodule each public name lives in, and
the submodule (with torch, transformers, ...) is imported when the name is first used, not when the
package is."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """`__getattr__` and `__dir__` for `package`, whose names `exports` maps to submodules (relative,
    dotted: `"similarity.metrics"`). A name, once loaded, is kept on the package."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
