"""Synthesized receive arrays: magnitude + phase -> multi-coil k-space (`kspacify convert --coils N`).

A coil model (`cylinder`, `surface`; a registry like the phase methods: `base.py`) places circular
loops around each volume's object; their sensitivities come from the Biot-Savart law by
reciprocity (`field.py`), their receiver noise from a correlated covariance scaled to the
magnitude's own noise (`noise.py`); `encode.py` forms the coil images, their k-space and the
root-sum-of-squares target. docs/format.md describes the output, docs/coils.md the model and how
it compares with real multi-coil data.
"""

from kspacify.coils.base import (
    ArrayOptions,
    CoilArray,
    CoilModel,
    CoilSpec,
    TooManyCoilsError,
    UnknownCoilModelError,
    create,
    model_names,
    parse,
    registry,
)  # fmt: skip
from kspacify.coils.encode import VolumeCoils, noise_sigma
from kspacify.coils.field import Loops
from kspacify.coils.geometry import Body, b0_direction, body_from_volume, slice_positions

DEFAULT_MODEL = "cylinder"
# the volume's coil draws: seeding.stream(seed, volume key, GEOMETRY_STREAM) for its array, and
# GEOMETRY_STREAM + 1 + start for the receiver noise of the slab that starts at slice `start`
# (phase synthesis uses the indices 0 .. slices - 1)
GEOMETRY_STREAM = 1 << 40

__all__ = [
    "ArrayOptions", "Body", "CoilArray", "CoilModel", "CoilSpec", "DEFAULT_MODEL", "GEOMETRY_STREAM", "Loops",
    "TooManyCoilsError", "UnknownCoilModelError", "VolumeCoils", "b0_direction", "body_from_volume", "create",
    "model_names", "noise_sigma", "parse", "registry", "slice_positions",
]  # fmt: skip
