"""The coil-model interface and its registry (the shape of `kspacify.phase.base`).

A coil model is one module in this package that defines `MODEL = CoilSpec(...)`: a name, a frozen
dataclass of its settings (parsed by `kspacify.options`, so a typo is an error naming the known
keys), `place(options, coils, body, rng)` that lays out the loops around one volume's object, and
`capacity(options)`: the most coils it can place, and how. The noise settings every model shares
are `ArrayOptions`, which each model's options extend.

`create(name, coils, options)` checks the settings and the count before any work (more coils than
the model places is a usage error), and gives a `CoilModel`; its `draw(body, rng)` is one volume's
`CoilArray`: the loops, their receivers' phases and the noise covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from kspacify.coils.field import Loops, loop_field, normalized, receive_sensitivity
from kspacify.coils.geometry import Body, tilted
from kspacify.coils.noise import covariance
from kspacify.errors import UsageError
from kspacify.options import OptionInfo, as_dict, build_options, describe
from kspacify.plugins import discover


@dataclass(frozen=True)
class ArrayOptions:
    """Receiver-noise settings shared by every coil model."""

    noise_scale: float = field(default=1.0, metadata={"help": "receiver noise per coil, in units of the magnitude's own noise estimate (0: none)"})
    noise_correlation: tuple[float, float] = field(default=(0.45, 0.85), metadata={"help": "range of kappa: noise correlation = kappa x field overlap"})
    noise_spread: float = field(default=0.1, metadata={"help": "log-normal spread of the coils' noise levels"})

    def __post_init__(self) -> None:
        if self.noise_scale < 0:
            raise ValueError("noise_scale must be >= 0")
        low, high = self.noise_correlation
        if not 0 <= low <= high < 1:
            raise ValueError("noise_correlation must be 0 <= low <= high < 1")
        if not 0 <= self.noise_spread <= 1:
            raise ValueError("noise_spread must be in [0, 1]")


@dataclass(frozen=True)
class LoopOptions(ArrayOptions):
    """Settings of the loops themselves, shared by the models that place them (each model declares
    its own `gap_mm`, the standoff from the object, with its own default)."""

    loop_diameter_mm: tuple[float, float] = field(default=(50.0, 140.0), metadata={"help": "smallest and largest loop diameter"})
    spacing: tuple[float, float] = field(default=(0.75, 0.9), metadata={"help": "neighbours' centre distance, in loop diameters"})
    jitter_mm: float = field(default=3.0, metadata={"help": "sd of each loop's position jitter"})
    size_jitter: float = field(default=0.1, metadata={"help": "each loop's diameter varies by up to this fraction"})
    tilt_deg: float = field(default=6.0, metadata={"help": "sd of each loop's tilt"})

    def __post_init__(self) -> None:
        super().__post_init__()
        gap = getattr(self, "gap_mm", (0.0, 0.0))
        check_range("gap_mm", gap)
        check_range("loop_diameter_mm", self.loop_diameter_mm, low=1.0)
        check_range("spacing", self.spacing, low=0.3, high=2.0)
        if min(self.jitter_mm, self.tilt_deg) < 0 or not 0 <= self.size_jitter < 1:
            raise ValueError("jitter_mm and tilt_deg must be >= 0, size_jitter in [0, 1)")


class LoopSet:
    """Collects loops as a model places them, each with the jitter of `LoopOptions`: its tilt
    and its diameter's spread; `loops()` is the finished set."""

    def __init__(self, options: LoopOptions, rng: np.random.Generator) -> None:
        self.options, self.rng = options, rng
        self._centres: list[np.ndarray] = []
        self._normals: list[np.ndarray] = []
        self._radii: list[np.ndarray] = []

    def add(self, centres: np.ndarray, outward: np.ndarray, diameter: float) -> None:
        """Loops at `centres` (K, 3) facing `outward` (K, 3, unit), of about `diameter` mm."""
        o, count = self.options, len(centres)
        self._centres.append(centres)
        self._normals.append(tilted(outward, self.rng, o.tilt_deg))
        self._radii.append(0.5 * diameter * (1 + o.size_jitter * self.rng.uniform(-1, 1, count)))

    def loops(self) -> Loops:
        return Loops(np.concatenate(self._centres), np.concatenate(self._normals), np.concatenate(self._radii))


def check_range(name: str, pair: tuple[float, float], low: float = 0.0, high: float = math.inf) -> None:
    """A (lo, hi) setting with low <= lo <= hi <= high, else a ValueError naming it."""
    if not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"{name} must be two numbers {low:g} <= lo <= hi" + (f" <= {high:g}" if high < math.inf else ""))


@dataclass(frozen=True)
class CoilSpec:
    """A registered coil model (see the module doc)."""

    name: str
    summary: str
    options: type
    place: Callable[[Any, int, Body, np.random.Generator], Loops]
    capacity: Callable[[Any], tuple[int, str]]

    def option_list(self) -> list[OptionInfo]:
        return describe(self.options)


@dataclass(frozen=True)
class CoilArray:
    """One volume's receive array: loops, receiver phases (C,), noise covariance (C, C) complex
    (mean variance 1; the noise sigma scales it), and the transverse basis of B0."""

    loops: Loops
    receiver_phase: np.ndarray
    noise_covariance: np.ndarray
    kappa: float
    b0: np.ndarray
    e1: np.ndarray
    e2: np.ndarray

    @property
    def coils(self) -> int:
        return len(self.loops)

    def sensitivities(self, points: np.ndarray) -> np.ndarray:
        """Complex maps (C, ...) at points (..., 3) mm: normalized (sum |S|^2 = 1), with the
        receivers' phases."""
        maps = normalized(receive_sensitivity(loop_field(points, self.loops), self.e1, self.e2))
        return maps * np.exp(1j * self.receiver_phase).reshape((-1,) + (1,) * (maps.ndim - 1))

    def to_json(self) -> dict[str, Any]:
        return {
            **self.loops.to_json(),
            "receiver_phase_rad": np.round(self.receiver_phase, 4).tolist(),
            "noise_kappa": round(float(self.kappa), 4),
            "noise_covariance_abs": np.round(np.abs(self.noise_covariance), 4).tolist(),
            "b0_direction": np.round(self.b0, 4).tolist(),
        }


@dataclass(frozen=True)
class CoilModel:
    """A coil model with checked settings and coil count."""

    spec: CoilSpec
    options: Any
    coils: int

    @property
    def name(self) -> str:
        return self.spec.name

    def settings(self) -> dict[str, Any]:
        return {"model": self.name, "coils": self.coils, **as_dict(self.options)}

    def draw(self, body: Body, rng: np.random.Generator) -> CoilArray:
        """The array for one volume: loops placed by the model, then the receivers' phases, the
        per-coil noise levels and the noise correlation scale kappa, all from `rng`."""
        loops = self.spec.place(self.options, self.coils, body, rng)
        b0, e1, e2 = body.frame()
        phase = rng.uniform(-np.pi, np.pi, self.coils)
        levels = np.exp(self.options.noise_spread * rng.standard_normal(self.coils))
        kappa = float(rng.uniform(*self.options.noise_correlation))
        psi = covariance(loop_field(body.points, loops), kappa, levels, phase)
        return CoilArray(loops, phase, psi, kappa, b0, e1, e2)


_registry: dict[str, CoilSpec] | None = None


def registry() -> dict[str, CoilSpec]:
    """All coil models by name, discovered once from the modules of this package."""
    global _registry
    if _registry is None:
        _registry = discover("kspacify.coils", "MODEL", CoilSpec)
    return _registry


def model_names() -> list[str]:
    return list(registry())


class UnknownCoilModelError(UsageError):
    pass


class TooManyCoilsError(UsageError):
    pass


def _spec(name: str) -> CoilSpec:
    models = registry()
    if name not in models:
        raise UnknownCoilModelError(f"unknown coil model {name!r}; choose one of: {', '.join(models)}")
    return models[name]


def parse(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The typed options of coil model `name` (text from --coil-opt, or Python values)."""
    return build_options(_spec(name).options, dict(options or {}), f"{name} coil model")


def create(name: str, coils: int, options: Mapping[str, Any] | None = None) -> CoilModel:
    """The model `name` for `coils` coils (2 or more), settings and count checked."""
    spec = _spec(name)
    parsed = parse(name, options)
    if coils < 2:
        raise UsageError(f"a coil model needs at least 2 coils, got {coils} (one coil is the single-coil file)")
    most, how = spec.capacity(parsed)
    if coils > most:
        raise TooManyCoilsError(f"the {name} coil model places at most {most} coils ({how}); got {coils}")
    return CoilModel(spec, parsed, coils)
