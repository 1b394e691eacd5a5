"""Plug-ins are found, not listed: every module of a package that defines a spec object under an
agreed name (`METHOD` for phase methods, `MODEL` for coil models) is registered by its `name`, so
adding one touches one file."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

T = TypeVar("T")


def discover(package: str, attribute: str, kind: type[T], skip: frozenset[str] = frozenset({"base"})) -> dict[str, T]:
    """name -> spec for the modules of `package` (dotted name) whose `attribute` is a `kind`,
    sorted by name; modules named in `skip` or starting with `_` are not imported."""
    root = importlib.import_module(package)
    found: dict[str, T] = {}
    for module_info in pkgutil.iter_modules(root.__path__):
        if module_info.name in skip or module_info.name.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"{package}.{module_info.name}"), attribute, None)
        if isinstance(spec, kind):
            found[spec.name] = spec  # type: ignore[attr-defined]
    return dict(sorted(found.items()))
