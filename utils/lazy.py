"""A package whose public names are imported from their modules on first use (PEP 562), so that importing one
light module of it does not import the heavy ones."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, homes: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``; ``homes``: {public name: the module of the package that
    defines it}."""

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__
