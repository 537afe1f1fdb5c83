"""Names of a package loaded on first use (PEP 562), so that importing it stays cheap.

A package lists ``name -> module`` and gets a module-level ``__getattr__`` and ``__dir__``::

    __getattr__, __dir__ = lazy(__name__, {"load_causal_lm": "memlens.models.hf"})

``module`` may also be ``name``'s own submodule path (``"memlens.capacity"`` for ``capacity``),
which is then imported and returned whole.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` serving ``names`` (name -> defining module)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        loaded = importlib.import_module(module)
        value = loaded if module == f"{package}.{name}" else getattr(loaded, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
