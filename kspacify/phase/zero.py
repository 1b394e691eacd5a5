"""`zero`: phase 0 everywhere, i.e. k-space of the magnitude image itself (a control)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kspacify.phase.base import MethodSpec


class ZeroPhase:
    name = "zero"

    def settings(self) -> dict[str, Any]:
        return {}

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(magnitude.shape, dtype=np.float32)


METHOD = MethodSpec(name="zero", summary="phase 0 (k-space of the magnitude image)", create=lambda **_: ZeroPhase())
