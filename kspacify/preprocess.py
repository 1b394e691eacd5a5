"""Magnitude preprocessing: one robust scale per volume, then a resize of every slice to a square grid.

Normalization divides the whole volume by its `percentile`-th intensity percentile (99.5 by default),
so that value is 1: robust to a few hot pixels, identical for every slice (relative intensities
between slices survive), and values above it are kept, not clipped.

Resizing makes pixels square in physical units (using the in-plane spacing), then fits the field of
view into `size` x `size`: `pad` scales the longer side to `size` and zero-pads the shorter one (the
whole field of view is kept); `crop` scales the shorter side to `size` and centre-crops the longer one
(no padding, edges lost). Shrinking is anti-aliased with a Gaussian prefilter (sigma = (1/zoom - 1)/2
pixels, the usual rule) before cubic interpolation; negative overshoot is clipped to 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from kspacify.errors import VolumeError

Fit = Literal["pad", "crop"]


MIN_SIZE, MAX_SIZE = 8, 4096  # fastMRI matrices are 320 to 640; a batch of 4096^2 slices is gigabytes


@dataclass(frozen=True)
class Preprocessing:
    size: int = 256
    fit: Fit = "pad"
    percentile: float = 99.5

    def __post_init__(self) -> None:
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be {MIN_SIZE} to {MAX_SIZE}, got {self.size}")
        if self.fit not in ("pad", "crop"):
            raise ValueError(f"fit must be 'pad' or 'crop', got {self.fit!r}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")


_PERCENTILE_SAMPLE = 1 << 21


def usable_magnitudes(volume: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The volume as magnitudes (finite, >= 0) and notes saying what was changed, or VolumeError
    when nothing usable is left. NaN and infinite values (masked voxels of a processed map, or a
    rescale that overflows) become 0; negative values (signed storage, an intercept) become 0; a
    volume with no finite value, or no positive one (a rescale slope of 0 or below), is refused,
    as it would be written as an all-zero volume."""
    notes = []
    finite = np.isfinite(volume)
    bad = int(volume.size - np.count_nonzero(finite))
    if bad == volume.size:
        raise VolumeError("no pixel value is a finite number (NaN or infinite everywhere: a rescale slope "
                          "beyond float32, or a damaged file)")  # fmt: skip
    if bad:
        volume = np.where(finite, volume, np.float32(0))
        notes.append(f"{bad} of {volume.size} pixel values were NaN or infinite: set to 0")
    low, high = float(volume.min()), float(volume.max())
    if high <= 0:
        what = "every pixel value is 0" if low == high == 0 else f"no pixel value is positive (min {low:g})"
        raise VolumeError(f"{what}: nothing to convert (a rescale slope of 0 or below?)")
    if low < 0:
        negative = int(np.count_nonzero(volume < 0))
        volume = np.maximum(volume, np.float32(0))
        notes.append(f"{negative} of {volume.size} pixel values were negative (down to {low:g}): set to 0, "
                     "as a magnitude is never negative")  # fmt: skip
    return volume, notes


def normalization_scale(volume: np.ndarray, percentile: float) -> float:
    """The divisor that maps the volume's `percentile`-th percentile to 1 (its max if that is 0).
    Volumes over 2M voxels are estimated from an evenly strided sample of 2M voxels (deterministic;
    a percentile of millions of voxels does not move with the other ones)."""
    flat = volume.reshape(-1)
    if flat.size > _PERCENTILE_SAMPLE:
        flat = flat[:: flat.size // _PERCENTILE_SAMPLE]
    finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        return 1.0
    scale = float(np.percentile(finite, percentile))
    if scale <= 0:
        scale = float(finite.max())
    return scale if scale > 0 else 1.0


def fitted_shape(shape: tuple[int, int], spacing: tuple[float, float], size: int, fit: Fit) -> tuple[int, int]:
    """(rows, cols) after making pixels square and fitting the field of view to `size`."""
    extent = np.array(shape, dtype=float) * np.array(spacing, dtype=float)
    pixel = (extent.max() if fit == "pad" else extent.min()) / size
    rows, cols = (max(1, int(round(e / pixel))) for e in extent)
    if fit == "pad":
        return min(rows, size), min(cols, size)
    return max(rows, size), max(cols, size)


def resized_spacing(shape: tuple[int, int], spacing: tuple[float, float], size: int, fit: Fit) -> float:
    """The (square) pixel spacing in mm after `resize`."""
    rows, _ = fitted_shape(shape, spacing, size, fit)
    return float(shape[0] * spacing[0] / rows)


def resize(volume: np.ndarray, spacing: tuple[float, float], size: int, fit: Fit,
           clip: bool = True) -> tuple[np.ndarray, float]:  # fmt: skip
    """Slices (S, H, W) -> (S, size, size) float32 (a new array), and the new pixel spacing in mm.
    `clip`: interpolation overshoot below 0 is set to 0 (magnitudes; not for signed values)."""
    slices, height, width = volume.shape
    rows, cols = fitted_shape((height, width), spacing, size, fit)
    pixel_spacing = resized_spacing((height, width), spacing, size, fit)
    if (rows, cols) != (height, width):
        zoom = (rows / height, cols / width)
        sigma = [0.0] + [max(0.0, (1.0 / z - 1.0) / 2.0) for z in zoom]
        work = volume.astype(np.float32, copy=False)
        if any(s > 0 for s in sigma):
            work = ndimage.gaussian_filter(work, sigma=sigma, mode="nearest")
        work = ndimage.zoom(work, (1.0, *zoom), order=3, mode="nearest", grid_mode=True)
        volume = np.clip(work, 0.0, None) if clip else work
    if volume.shape[1:] == (size, size):
        return volume.astype(np.float32), pixel_spacing
    out = np.zeros((slices, size, size), dtype=np.float32)
    # centre-pad or centre-crop each axis
    src_r, dst_r = _centre(rows, size)
    src_c, dst_c = _centre(cols, size)
    out[:, dst_r, dst_c] = volume[:, src_r, src_c]
    return out, pixel_spacing


def _centre(n: int, size: int) -> tuple[slice, slice]:
    """(source, destination) slices that centre a length-n axis in a length-size one."""
    if n >= size:
        start = (n - size) // 2
        return slice(start, start + size), slice(0, size)
    start = (size - n) // 2
    return slice(0, n), slice(start, start + n)


@dataclass(frozen=True)
class Prepared:
    """A volume (S, H, W) ready to be preprocessed slab by slab: the scale comes from the whole volume
    (or is given, as `data build` gives one scale to several planes of one volume), so slabs of it are
    exactly the slices of preprocessing it whole. `convert` and `data build` both go through this."""

    volume: np.ndarray
    spacing: tuple[float, float]
    config: Preprocessing
    scale: float = field(default=0.0)
    phase: np.ndarray | None = None  # an acquired phase (radians, the volume's shape), resized with it

    def __post_init__(self) -> None:
        if not self.scale:
            object.__setattr__(self, "scale", normalization_scale(self.volume, self.config.percentile))

    @property
    def pixel_spacing(self) -> float:
        """The (square) output pixel spacing in mm."""
        return resized_spacing(self.volume.shape[1:], self.spacing, self.config.size, self.config.fit)

    def slab(self, start: int = 0, stop: int | None = None, index: np.ndarray | None = None) -> np.ndarray:
        """Normalized, resized magnitudes (n, size, size) float32 of slices start..stop (or `index`)."""
        part = self.volume[start:stop] if index is None else self.volume[index]
        resized, _ = resize(part, self.spacing, self.config.size, self.config.fit)
        resized *= np.float32(1.0 / self.scale)
        return resized

    def phase_slab(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The acquired phase of slices start..stop, resized as `slab` resizes their magnitudes and
        wrap-safely: the complex image's real and imaginary parts (magnitude x cos, x sin) are
        resized, and their angle taken, so a wrap from pi to -pi is not smeared into the values
        between; radians in [-pi, pi), float32 (0 where the magnitude is 0)."""
        if self.phase is None:
            raise ValueError("no acquired phase to resize")
        magnitude, phase = self.volume[start:stop], self.phase[start:stop]
        parts = [resize(magnitude * part(phase), self.spacing, self.config.size, self.config.fit, clip=False)[0]
                 for part in (np.cos, np.sin)]  # fmt: skip
        angle = np.arctan2(parts[1], parts[0]).astype(np.float32)
        return np.where(angle >= np.float32(np.pi), angle - np.float32(2 * np.pi), angle).astype(np.float32)
