"""`zero`: phase 0 everywhere, i.e. k-space of the magnitude image itself (a control, and for spin
echoes, whose tissue phase is nearly flat, a serious baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.phase.base import MethodSpec


@dataclass(frozen=True)
class ZeroOptions:
    """No settings."""


class ZeroPhase:
    name = "zero"

    def settings(self) -> dict[str, Any]:
        return {}

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN) -> np.ndarray:
        return np.zeros(magnitude.shape, dtype=np.float32)


METHOD = MethodSpec(
    name="zero",
    summary="phase 0 (k-space of the magnitude image)",
    options=ZeroOptions,
    build=lambda options, device: ZeroPhase(),
)
