"""Registries that fill themselves by importing a package's modules (the rules, the executors)."""

from __future__ import annotations

import importlib
import pkgutil


def import_public_modules(package: str) -> None:
    """Import every module of `package` whose name has no leading underscore; each registers what it defines."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")  # an ImportError here is a real bug: let it out
