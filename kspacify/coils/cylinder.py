"""`cylinder`: a head-like array of loops on a cylinder around the object, its axis along B0.

Per volume: the cylinder's radius is the object's largest distance from the axis plus a standoff
(`gap_mm`); the loops sit in rings (from enough rings for `max_per_ring` up to about one ring per
6 coils, at random); each ring's loops are spaced evenly around it from a random start, their
diameter such that neighbours' centres are `spacing` diameters apart (overlapped, as arrays
decouple neighbours), within `loop_diameter_mm`; rings are that far apart along the axis, the array
centred on the object with a random offset. Each loop then gets its own jitter of position, size and
tilt. A small object with many coils gets loops of the smallest diameter on a cylinder wider than
the object needs. Real head arrays also have loops on a dome over the vertex; this model has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kspacify.coils.base import CoilSpec, LoopOptions, LoopSet
from kspacify.coils.field import Loops
from kspacify.coils.geometry import Body, cross_section, spread_counts


@dataclass(frozen=True)
class CylinderOptions(LoopOptions):
    gap_mm: tuple[float, float] = field(default=(20.0, 50.0), metadata={"help": "standoff of the loops from the object"})
    max_per_ring: int = field(default=16, metadata={"help": "most loops in one ring"})
    max_rings: int = field(default=4, metadata={"help": "most rings along the axis"})
    axial_offset_mm: float = field(default=15.0, metadata={"help": "sd of the array's offset along the axis"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_per_ring < 2 or self.max_rings < 1:
            raise ValueError("max_per_ring must be >= 2 and max_rings >= 1")
        if self.axial_offset_mm < 0:
            raise ValueError("axial_offset_mm must be >= 0")


def capacity(options: CylinderOptions) -> tuple[int, str]:
    return options.max_rings * options.max_per_ring, f"{options.max_rings} rings of {options.max_per_ring}; see --coil-opt max_rings, max_per_ring"


def place(options: CylinderOptions, coils: int, body: Body, rng: np.random.Generator) -> Loops:
    o = options
    centre, _, transverse, (axis, e1, e2) = cross_section(body)
    radius = float(np.max(np.hypot(transverse[:, 0], transverse[:, 1]))) + rng.uniform(*o.gap_mm)
    fewest = math.ceil(coils / o.max_per_ring)
    rings = int(rng.integers(fewest, min(o.max_rings, max(fewest, coils // 6)) + 1))
    counts = spread_counts(coils, rings)
    spacing = rng.uniform(*o.spacing)
    smallest, largest = o.loop_diameter_mm
    diameter = 2 * math.pi * radius / counts[0] / spacing
    if diameter < smallest:  # the loops cannot shrink further: the cylinder grows
        radius = counts[0] * spacing * smallest / (2 * math.pi)
    diameter = float(np.clip(diameter, smallest, largest))
    pitch = spacing * diameter
    offset = rng.normal(0.0, o.axial_offset_mm)
    loops = LoopSet(o, rng)
    for ring, count in enumerate(counts):
        along = (ring - (rings - 1) / 2) * pitch + offset
        angles = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(count) / count
        angles = angles + rng.normal(0.0, o.jitter_mm / radius, count)
        outward = np.cos(angles)[:, None] * e1 + np.sin(angles)[:, None] * e2
        distance = radius + rng.normal(0.0, o.jitter_mm, count)
        shift = along + rng.normal(0.0, o.jitter_mm, count)
        loops.add(centre + shift[:, None] * axis + distance[:, None] * outward, outward, diameter)
    return loops.loops()


MODEL = CoilSpec(
    name="cylinder",
    summary="head-like: rings of overlapped loops on a cylinder around the object, axis along B0",
    options=CylinderOptions,
    place=place,
    capacity=capacity,
)
