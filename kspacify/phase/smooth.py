"""`smooth`: a random smooth phase map, the paper's naive baseline.

Each map is a Gaussian random field: white Gaussian noise low-pass filtered with a Gaussian kernel
whose standard deviation is `smoothness` x image width (pixels), rescaled to a standard deviation of
`amplitude` radians, plus a uniform random global phase. It ignores the magnitude entirely.
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
        noise = rng.standard_normal((batch, height, width), dtype=np.float32)
        sigma = self.smoothness * width
        fy = np.fft.fftfreq(height).astype(np.float32)[:, None]
        fx = np.fft.rfftfreq(width).astype(np.float32)[None, :]
        kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)).astype(np.float32)
        field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=(height, width))
        field -= field.mean(axis=(1, 2), keepdims=True)
        field /= field.std(axis=(1, 2), keepdims=True) + 1e-12
        offset = rng.uniform(-np.pi, np.pi, size=(batch, 1, 1))
        return wrap(self.amplitude * field + offset)


METHOD = MethodSpec(
    name="smooth",
    summary="random low-pass Gaussian field (naive baseline; ignores the magnitude)",
    create=lambda smoothness=0.15, amplitude=1.5, **_: SmoothPhase(smoothness, amplitude),
    auto_rank=100,
    usable=lambda device: (True, "model-free, always available"),
)
