"""`acquired`: the phase the scanner acquired with the magnitude, where the archive holds it.

Gradient echo, SWI and field-map series often store phase images beside the magnitudes; the DICOM
reader pairs them with the magnitudes of the same acquisition (`kspacify.sources.dicom.pairing`)
and turns their values into radians as each vendor stores them (`kspacify.sources.dicom.phase`).
The pipeline resizes that phase with the magnitudes (`preprocess.Prepared.phase_slab`) and this
method writes it as it is: real phase, the most realistic there is, so `auto` takes it for every
volume that has one. A volume without acquired phase fails with `--phase acquired` (one line
saying so); `auto` gives it a synthesized phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.errors import VolumeError
from kspacify.phase.base import MethodSpec, wrap

NO_PHASE = ("no acquired phase: no phase images of the same acquisition (study, geometry, echo, temporal position) "
            "were found beside its magnitudes; use --phase auto or a synthesizing method for it")  # fmt: skip


@dataclass(frozen=True)
class AcquiredOptions:
    """No settings: the phase is what was acquired."""


class AcquiredPhase:
    name = "acquired"
    reads_acquired_phase = True

    def settings(self) -> dict[str, Any]:
        return {"source": "acquired: phase images paired with the magnitudes, in radians, resized with them"}

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN,
                   acquired: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        if acquired is None:
            raise VolumeError(NO_PHASE)
        if acquired.shape != magnitude.shape:
            raise VolumeError(f"acquired phase of shape {acquired.shape} for magnitudes of shape {magnitude.shape}")
        return wrap(acquired)


def _usable(device: str, acquisition: Acquisition = UNKNOWN) -> tuple[bool, str]:
    return True, "the volume's acquired phase (real phase, the most realistic there is)"


METHOD = MethodSpec(
    name="acquired",
    summary="the phase acquired with the magnitude (DICOM phase images paired with it): real phase, the most "
            "realistic there is; auto takes it wherever a volume has one",
    options=AcquiredOptions,
    build=lambda options, device: AcquiredPhase(),
    auto_rank=0,
    usable=_usable,
    uses=("acquired phase",),
    needs_phase=True,
)
