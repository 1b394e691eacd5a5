"""`surface`: flexible arrays for body parts: pads of loops conforming to the body's outline.

Per volume: the object's cross-section (perpendicular to B0) gets an ellipse along its principal
axes, its half-extents plus a standoff (`gap_mm`): the surface a flexible array lies on. `pads`
pads (2: the two flat sides, front and back, as an anterior array over a posterior one; 1: one of
them at random) each cover a random share of the ellipse's perimeter (`coverage`), their loops in
rows along the axis and columns along the outline, facing outward along the ellipse's normal.
Loop diameters follow from the arc a pad covers and `spacing`, within `loop_diameter_mm`: a pad
with more columns than its arc holds at the smallest diameter grows past it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kspacify.coils.base import CoilSpec, LoopOptions, LoopSet, check_range
from kspacify.coils.field import Loops
from kspacify.coils.geometry import Body, cross_section, spread_counts


@dataclass(frozen=True)
class SurfaceOptions(LoopOptions):
    gap_mm: tuple[float, float] = field(default=(5.0, 20.0), metadata={"help": "standoff of the pads from the object"})
    pads: int = field(default=2, metadata={"help": "1 or 2 pads (2: front and back)"})
    coverage: tuple[float, float] = field(default=(0.25, 0.45), metadata={"help": "share of the outline each pad covers"})
    max_rows: int = field(default=4, metadata={"help": "most rows of loops along the axis per pad"})
    max_columns: int = field(default=8, metadata={"help": "most columns of loops along the outline per pad"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("coverage", self.coverage, low=0.01, high=0.5)
        if self.pads not in (1, 2):
            raise ValueError("pads must be 1 or 2")
        if self.max_rows < 1 or self.max_columns < 1:
            raise ValueError("max_rows and max_columns must be >= 1")


def capacity(options: SurfaceOptions) -> tuple[int, str]:
    return (
        options.pads * options.max_rows * options.max_columns,
        f"{options.pads} pad(s) of {options.max_rows} rows x {options.max_columns} columns; see --coil-opt pads, max_rows, max_columns",
    )


class _Ellipse:
    """x = a cos t, y = b sin t, with its arc length as a function of t."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = a, b
        self.t = np.linspace(0.0, 2 * math.pi, 2049)
        step = np.hypot(np.diff(a * np.cos(self.t)), np.diff(b * np.sin(self.t)))
        self.arc = np.concatenate([[0.0], np.cumsum(step)])
        self.perimeter = float(self.arc[-1])

    def at_arc(self, s: np.ndarray) -> np.ndarray:
        return np.interp(np.mod(s, self.perimeter), self.arc, self.t)

    def arc_of(self, t: float) -> float:
        return float(np.interp(t, self.t, self.arc))


def place(options: SurfaceOptions, coils: int, body: Body, rng: np.random.Generator) -> Loops:
    o = options
    centre, _, transverse, (axis, e1, e2) = cross_section(body)
    values, vectors = np.linalg.eigh(np.cov(transverse.T) + 1e-9 * np.eye(2))
    minor, major = vectors[:, 0], vectors[:, 1]  # eigh sorts ascending
    u_major = major[0] * e1 + major[1] * e2
    u_minor = minor[0] * e1 + minor[1] * e2
    gap = rng.uniform(*o.gap_mm)
    half_major = float(np.max(np.abs(transverse @ major))) + gap
    half_minor = float(np.max(np.abs(transverse @ minor))) + gap
    ellipse = _Ellipse(max(half_major, 1.0), max(half_minor, 1.0))
    sides = [math.pi / 2, 3 * math.pi / 2] if o.pads == 2 else [rng.choice([math.pi / 2, 3 * math.pi / 2])]
    spacing = rng.uniform(*o.spacing)
    smallest, largest = o.loop_diameter_mm
    offset = rng.normal(0.0, o.jitter_mm)
    loops = LoopSet(o, rng)
    for side, count in zip(sides, spread_counts(coils, len(sides))):
        fewest = math.ceil(count / o.max_columns)
        rows = int(rng.integers(fewest, min(o.max_rows, max(fewest, count // 3)) + 1))
        columns = math.ceil(count / rows)
        span = rng.uniform(*o.coverage) * ellipse.perimeter
        diameter = float(np.clip(span / columns / spacing, smallest, largest))
        pitch = spacing * diameter
        middle = ellipse.arc_of(side + rng.normal(0.0, 0.1))
        for row, in_row in enumerate(spread_counts(count, rows)):
            along = (row - (rows - 1) / 2) * pitch + offset + rng.normal(0.0, o.jitter_mm, in_row)
            s = middle + (np.arange(in_row) - (in_row - 1) / 2) * pitch + rng.normal(0.0, o.jitter_mm, in_row)
            t = ellipse.at_arc(s)
            on_surface = (ellipse.a * np.cos(t))[:, None] * u_major + (ellipse.b * np.sin(t))[:, None] * u_minor
            outward = (np.cos(t) / ellipse.a)[:, None] * u_major + (np.sin(t) / ellipse.b)[:, None] * u_minor
            outward /= np.linalg.norm(outward, axis=1, keepdims=True)
            lift = rng.normal(0.0, o.jitter_mm, (in_row, 1))
            loops.add(centre + along[:, None] * axis + on_surface + lift * outward, outward, diameter)
    return loops.loops()


MODEL = CoilSpec(
    name="surface",
    summary="flexible body arrays: pads of loops on an ellipse around the body's outline, axis along B0",
    options=SurfaceOptions,
    place=place,
    capacity=capacity,
)
