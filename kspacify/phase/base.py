"""The phase-synthesizer interface and its registry.

A phase method is one module in this package that defines `METHOD = MethodSpec(...)`; the registry
finds it by walking the package, so adding a method touches one file. `auto` is a rule over the
registry (lowest `auto_rank` among methods that say they are usable), not a special case in the CLI.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np


class PhaseSynthesizer(Protocol):
    """Magnitude batch in, phase batch out.

    `synthesize` takes normalized magnitudes, float32 (batch, H, W), and a seeded generator, and
    returns phase maps in radians, float32 (batch, H, W), wrapped to [-pi, pi). Only the phase is
    produced: the magnitude written out is always the input magnitude.
    """

    name: str

    def settings(self) -> dict[str, Any]:
        """JSON-able provenance: the method's parameters (and checkpoint sha256 where one is used)."""
        ...

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registered phase method.

    `create(**options)` builds a synthesizer (options come from the CLI, e.g. device, steps).
    `auto_rank`: order in which `auto` considers it (lower first); None: `auto` never picks it.
    `usable(device)`: (ok, reason) for `auto`, e.g. "no checkpoint found" or "no GPU".
    """

    name: str
    summary: str
    create: Callable[..., PhaseSynthesizer]
    auto_rank: int | None = None
    usable: Callable[[str], tuple[bool, str]] = lambda device: (True, "always available")


_NOT_METHODS = {"base"}
_registry: dict[str, MethodSpec] | None = None


def registry() -> dict[str, MethodSpec]:
    """All phase methods by name, discovered once from the modules of this package."""
    global _registry
    if _registry is None:
        import kspacify.phase as package

        found: dict[str, MethodSpec] = {}
        for module_info in pkgutil.iter_modules(package.__path__):
            if module_info.name in _NOT_METHODS or module_info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package.__name__}.{module_info.name}")
            spec = getattr(module, "METHOD", None)
            if isinstance(spec, MethodSpec):
                found[spec.name] = spec
        _registry = dict(sorted(found.items()))
    return _registry


def method_names() -> list[str]:
    return list(registry())


def known_options(method: str, options: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """`options` unchanged if every key is in `known`; else a ValueError naming them (a typo in a
    `--phase-opt` must not pass silently)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{method} phase: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return options


class UnknownMethodError(ValueError):
    pass


def resolve(name: str, device: str) -> tuple[str, str]:
    """The method `name` stands for, and why: `auto` picks the best usable one on `device`."""
    methods = registry()
    if name != "auto":
        if name not in methods:
            raise UnknownMethodError(
                f"unknown phase method {name!r}; choose one of: auto, {', '.join(methods)}"
            )
        return name, "chosen with --phase"
    ranked = sorted((m for m in methods.values() if m.auto_rank is not None), key=lambda m: m.auto_rank)
    passed_over: list[str] = []
    for method in ranked:
        ok, reason = method.usable(device)
        if ok:
            why = f"auto: {reason}"
            if passed_over:
                why += f" (not {'; not '.join(passed_over)})"
            return method.name, why
        passed_over.append(f"{method.name}: {reason}")
    raise UnknownMethodError("no phase method is usable: " + "; ".join(passed_over))


def create(name: str, **options: Any) -> PhaseSynthesizer:
    """Build the synthesizer registered as `name` (not `auto`: call `resolve` first)."""
    methods = registry()
    if name not in methods:
        raise UnknownMethodError(f"unknown phase method {name!r}; choose one of: {', '.join(methods)}")
    return methods[name].create(**options)


def wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap radians to [-pi, pi), float32."""
    phase = np.asarray(phase, dtype=np.float32)
    wrapped = phase - np.float32(2 * np.pi) * np.floor((phase + np.float32(np.pi)) * np.float32(0.5 / np.pi))
    # float32 rounding can land exactly on +pi
    return np.where(wrapped >= np.float32(np.pi), wrapped - np.float32(2 * np.pi), wrapped).astype(np.float32, copy=False)
