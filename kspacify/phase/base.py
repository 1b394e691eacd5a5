"""The phase-synthesizer interface and its registry.

A phase method is one module in this package that defines `METHOD = MethodSpec(...)`; the registry
finds it by walking the package, so adding a method touches one file. Its settings are a frozen
dataclass (`MethodSpec.options`), parsed and checked by `kspacify.options`: a mistyped or unknown
setting is an error naming the known ones. The device is not a setting but a runtime argument of
`create`. `auto` is a rule over the registry (lowest `auto_rank` among methods that say they are
usable for the volume's acquisition), not a special case in the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.errors import UsageError
from kspacify.options import OptionInfo, build_options, describe
from kspacify.plugins import discover


class PhaseSynthesizer(Protocol):
    """Magnitude batch in, phase batch out.

    `synthesize` takes normalized magnitudes, float32 (batch, H, W), a seeded generator and the
    volume's `Acquisition` (unknown fields: the method's acquisition-agnostic behaviour), and returns
    phase maps in radians, float32 (batch, H, W), wrapped to [-pi, pi). Only the phase is produced:
    the magnitude written out is always the input magnitude. A method that writes a volume's acquired
    phase (`acquired`) has `reads_acquired_phase = True` and is given that phase, resized with the
    magnitudes, as `synthesize(..., acquired=phase)`.
    """

    name: str

    def settings(self) -> dict[str, Any]:
        """JSON-able provenance: the method's parameters (and checkpoint sha256 where one is used)."""
        ...

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN) -> np.ndarray: ...


def _always(device: str, acquisition: Acquisition = UNKNOWN) -> tuple[bool, str]:
    return True, "always available"


@dataclass(frozen=True)
class MethodSpec:
    """A registered phase method.

    `options`: the frozen dataclass of its settings (defaults = the method's defaults).
    `build(options, device)`: a synthesizer from parsed options, on a device ("auto", "cpu", ...).
    `auto_rank`: order in which `auto` considers it (lower first); None: `auto` never picks it.
    `usable(device, acquisition)`: (ok, reason) for `auto`, e.g. "no checkpoint found".
    `uses`: the `Acquisition` fields the method reads (shown by `kspacify methods`).
    `needs_phase`: the method writes a volume's acquired phase: `auto` considers it only for volumes
    that have one.
    """

    name: str
    summary: str
    options: type
    build: Callable[[Any, str], PhaseSynthesizer]
    auto_rank: int | None = None
    usable: Callable[[str, Acquisition], tuple[bool, str]] = _always
    uses: tuple[str, ...] = ()
    needs_phase: bool = False

    def option_list(self) -> list[OptionInfo]:
        return describe(self.options)


_NOT_METHODS = {"base"}
_registry: dict[str, MethodSpec] | None = None


def registry() -> dict[str, MethodSpec]:
    """All phase methods by name, discovered once from the modules of this package."""
    global _registry
    if _registry is None:
        _registry = discover("kspacify.phase", "METHOD", MethodSpec, frozenset(_NOT_METHODS))
    return _registry


def method_names() -> list[str]:
    return list(registry())


class UnknownMethodError(UsageError):
    pass


def _spec(name: str) -> MethodSpec:
    methods = registry()
    if name not in methods:
        raise UnknownMethodError(f"unknown phase method {name!r}; choose one of: auto, {', '.join(methods)}")
    return methods[name]


def resolve(name: str, device: str, acquisition: Acquisition = UNKNOWN, has_phase: bool = False) -> tuple[str, str]:
    """The method `name` stands for, and why: `auto` picks the best method usable on `device` for
    a volume acquired as `acquisition` (`has_phase`: with an acquired phase of its own)."""
    if name != "auto":
        return _spec(name).name, "chosen with --phase"
    ranked = sorted((m for m in registry().values() if m.auto_rank is not None and (has_phase or not m.needs_phase)),
                    key=lambda m: m.auto_rank)  # type: ignore[arg-type, return-value]
    passed_over: list[str] = []
    for method in ranked:
        ok, reason = method.usable(device, acquisition)
        if ok:
            why = f"auto: {reason}"
            if passed_over:
                why += f" (not {'; not '.join(passed_over)})"
            return method.name, why
        passed_over.append(f"{method.name}: {reason}")
    raise UnknownMethodError("no phase method is usable: " + "; ".join(passed_over))


class AutoPhase:
    """`--phase auto` as a synthesizer: each volume gets the best method usable for its acquisition
    (`resolve`; a volume with acquired phase: `acquired`), built once per method. `for_acquisition`
    says which one a volume gets, and why."""

    name = "auto"

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._chosen: dict[tuple[Acquisition, bool], tuple[PhaseSynthesizer, str]] = {}
        self._built: dict[str, PhaseSynthesizer] = {}

    def for_acquisition(self, acquisition: Acquisition, has_phase: bool = False) -> tuple[PhaseSynthesizer, str]:
        if (acquisition, has_phase) not in self._chosen:
            name, why = resolve("auto", self.device, acquisition, has_phase)
            if name not in self._built:
                self._built[name] = create(name, device=self.device)
            self._chosen[acquisition, has_phase] = (self._built[name], why)
        return self._chosen[acquisition, has_phase]

    def settings(self) -> dict[str, Any]:
        return {"rule": "per volume: the best method usable for its acquisition (kspacify.phase.resolve)"}

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN) -> np.ndarray:
        return self.for_acquisition(acquisition)[0].synthesize(magnitude, rng, acquisition)


ACQUIRED = "with acquired phase"  # the `choices` entry of volumes that have their own phase


def choices(device: str) -> dict[str, tuple[str, str]]:
    """What `auto` picks on `device` for a volume of each sequence family (family -> (method, why)),
    and for a volume with acquired phase (`ACQUIRED`)."""
    from kspacify.acquisition import Family

    picks = {family.value: resolve("auto", device, Acquisition(family=family)) for family in Family}
    picks[ACQUIRED] = resolve("auto", device, UNKNOWN, has_phase=True)
    return picks


def reads_acquired_phase(name: str) -> bool:
    """Whether converting with method `name` (or `auto`) may write a volume's acquired phase, so
    that phase must be loaded with the magnitudes."""
    return name == "auto" or (name in registry() and registry()[name].needs_phase)


def parse(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The typed options of method `name` from `options` (text from the CLI, or Python values);
    an OptionError (a usage error) names a key the method does not know, or a bad value."""
    return build_options(_spec(name).options, dict(options or {}), f"{name} phase")


def create(name: str, *, device: str = "auto", **options: Any) -> PhaseSynthesizer:
    """Build the synthesizer registered as `name` on `device`; `auto` chooses per volume (no options)."""
    if name == "auto":
        if options:
            raise UsageError(f"--phase auto takes no phase options ({', '.join(sorted(options))}): choose the method "
                             "with --phase NAME to set its options")  # fmt: skip
        return AutoPhase(device)
    spec = _spec(name)
    return spec.build(parse(name, options), device)


def wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap radians to [-pi, pi), float32."""
    phase = np.asarray(phase, dtype=np.float32)
    turns = np.add(phase, np.float32(np.pi), out=np.empty_like(phase))  # phase - 2 pi floor((phase + pi) / (2 pi)), in place: 2x faster
    turns *= np.float32(0.5 / np.pi)
    np.floor(turns, out=turns)
    turns *= np.float32(2 * np.pi)
    wrapped = np.subtract(phase, turns, out=turns)
    # float32 rounding can land exactly on +pi
    np.subtract(wrapped, np.float32(2 * np.pi), out=wrapped, where=wrapped >= np.float32(np.pi))
    return wrapped
