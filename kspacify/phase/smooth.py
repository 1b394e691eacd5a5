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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kspacify.phase.base import MethodSpec, wrap


@dataclass(frozen=True)
class SmoothPhase:
    smoothness: float = 0.15
    amplitude: float = 1.5
    name: str = "smooth"

    def __post_init__(self) -> None:
        if not self.smoothness > 0:
            raise ValueError(f"smooth phase: smoothness must be > 0, got {self.smoothness}")
        if self.amplitude < 0:
            raise ValueError(f"smooth phase: amplitude must be >= 0, got {self.amplitude}")

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "name"}

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
    create=lambda smoothness=0.15, amplitude=1.5, **_: SmoothPhase(smoothness, amplitude),
    auto_rank=100,
    usable=lambda device: (True, "model-free, always available"),
)
