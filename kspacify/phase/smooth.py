"""`smooth`: a random smooth phase map, the paper's naive baseline.

Each map is a Gaussian random field: white Gaussian noise low-pass filtered with a Gaussian kernel
whose standard deviation is `smoothness` x image width (pixels), rescaled to a standard deviation of
`amplitude` radians, plus a uniform random global phase. It ignores the magnitude entirely.

The field is synthesized spectrally: complex Gaussian coefficients, weighted by the kernel's spectrum
exp(-2 pi^2 sigma^2 f^2), for only the frequencies where that weight exceeds 1e-4, summed with two
small matrix products. A smooth field has few such frequencies, so this costs a fraction of an FFT,
and unlike FFT filtering the field does not wrap around at the image edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.options import as_dict
from kspacify.phase.base import MethodSpec, wrap


@dataclass(frozen=True)
class SmoothPhase:
    """The method is its settings: a random field of this smoothness and amplitude."""

    smoothness: float = field(default=0.15, metadata={"help": "kernel standard deviation as a fraction of the width (0, 10]"})
    amplitude: float = field(default=1.5, metadata={"help": "standard deviation of the field in radians [0, 100]"})
    name: ClassVar[str] = "smooth"

    def __post_init__(self) -> None:
        if not 0 < self.smoothness <= 10:
            raise ValueError(f"smooth phase: smoothness must be in (0, 10], got {self.smoothness}")
        if not 0 <= self.amplitude <= 100:
            raise ValueError(f"smooth phase: amplitude must be in [0, 100] radians, got {self.amplitude}")

    def settings(self) -> dict[str, Any]:
        return as_dict(self)

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN) -> np.ndarray:
        batch, height, width = magnitude.shape
        sigma = self.smoothness * width
        cutoff = np.sqrt(np.log(1e4) / 2.0) / (np.pi * sigma)  # cycles/pixel where the weight is 1e-4
        fy, ey = _band(height, cutoff)
        fx, ex = _band(width, cutoff)
        weight = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy[:, None] ** 2 + fx[None, :] ** 2)).astype(np.float32)
        shape = (batch, fy.size, fx.size)
        coefficients = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)
        rows = np.einsum("ya,bax->byx", ey, coefficients * weight)  # (batch, height, nx), small
        # Re(rows @ ex.T) as one real product: [Re rows, -Im rows] @ [Re ex.T; Im ex.T]
        field = np.concatenate([rows.real, -rows.imag], axis=-1) @ np.concatenate([ex.real.T, ex.imag.T])
        field -= field.mean(axis=(1, 2), keepdims=True)
        field /= field.std(axis=(1, 2), keepdims=True) + 1e-12
        offset = rng.uniform(-np.pi, np.pi, size=(batch, 1, 1))
        return wrap(self.amplitude * field + offset)


def _band(n: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cycles/pixel) up to `cutoff` on an n-point grid, and their complex exponentials."""
    k = np.arange(-min(n // 2, int(np.ceil(cutoff * n))), min(n // 2, int(np.ceil(cutoff * n))) + 1)
    frequencies = k / n
    return frequencies, np.exp(2j * np.pi * np.outer(np.arange(n), frequencies)).astype(np.complex64)


METHOD = MethodSpec(
    name="smooth",
    summary="random low-pass Gaussian field (naive baseline; ignores the magnitude)",
    options=SmoothPhase,
    build=lambda options, device: options,
    auto_rank=100,
    usable=lambda device, acquisition=UNKNOWN: (True, "model-free, always available"),  # type: ignore[misc]
)
