"""Measures of coil-sensitivity structure, to compare synthesized arrays with real ones.

The same estimator runs on real and on synthesized coil images, so the comparison does not depend
on how good the estimator is: maps are the coil images at low resolution (each coil's k-space under
a Gaussian window of `resolution_mm` FWHM, as a calibration scan would give) divided by their root
sum of squares (so sum |S|^2 = 1, as ESPIRiT's and the synthesized ones are), over the object (RSS
above `threshold` of its 99th percentile, eroded by a window width so edges do not count).

Per coil set (medians over coils, or over coil pairs):
- `falloff`: the ratio of the 90th to the 10th percentile of |S_c| over the object: how strongly a
  coil's sensitivity changes across it (near the loop against the far side).
- `length_mm`: |S_c| / |grad |S_c|| averaged over the object: the length over which a map's
  magnitude changes by its own size (spatial smoothness; larger is smoother).
- `phase_gradient_rad_per_cm`: the mean |grad angle(S_c conj(S_d))| over the object, over all coil
  pairs: how fast the coil-to-coil phase turns (the object's own phase cancels in the pair).
- `phase_span_rad`: the circular spread (sqrt(-2 ln R), R the mean resultant length) of
  angle(S_c conj(S_d)) over the object, over pairs: how much of the circle a pair's relative phase
  covers across the object.
- `effective_coils`: the number of principal components of the maps over the object that keep 90%
  of their energy (how compressible the array is), and `noise_correlation_mean`, `_max` where a
  noise covariance is known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from kspacify.kspace import fft2c, ifft2c


@dataclass(frozen=True)
class CoilMeasures:
    falloff: float
    length_mm: float
    phase_gradient_rad_per_cm: float
    phase_span_rad: float
    effective_coils: float

    def to_json(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def estimate_maps(images: np.ndarray, pixel_mm: float, resolution_mm: float = 20.0) -> np.ndarray:
    """Low-resolution maps (C, H, W) complex128 of coil images (C, H, W), sum |S|^2 = 1."""
    coils, height, width = images.shape
    ky = np.fft.fftshift(np.fft.fftfreq(height, d=pixel_mm))[:, None]  # cycles per mm
    kx = np.fft.fftshift(np.fft.fftfreq(width, d=pixel_mm))[None, :]
    # a Gaussian image-space kernel of FWHM resolution_mm is a Gaussian k-space window
    sigma_mm = resolution_mm / (2 * np.sqrt(2 * np.log(2)))
    window = np.exp(-2 * (np.pi * sigma_mm) ** 2 * (kx**2 + ky**2))
    low = ifft2c(fft2c(images.astype(np.complex128)) * window)
    return low / np.maximum(np.sqrt(np.sum(np.abs(low) ** 2, axis=0)), np.finfo(np.float64).tiny)


def object_mask(rss: np.ndarray, pixel_mm: float, threshold: float = 0.15, erode_mm: float = 10.0) -> np.ndarray:
    mask = rss > threshold * np.percentile(rss, 99)
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=2))
    labels, count = ndimage.label(mask)
    if count > 1:
        mask = labels == (1 + int(np.argmax(ndimage.sum(mask, labels, range(1, count + 1)))))
    return ndimage.binary_erosion(mask, iterations=max(1, int(round(erode_mm / pixel_mm))))


def measure(maps: np.ndarray, mask: np.ndarray, pixel_mm: float) -> CoilMeasures:
    """The measures of the module doc for maps (C, H, W) over `mask` (H, W)."""
    coils = maps.shape[0]
    magnitude = np.abs(maps)
    inside = magnitude[:, mask]
    falloff = np.median(np.percentile(inside, 90, axis=1) / np.maximum(np.percentile(inside, 10, axis=1), 1e-12))
    gy, gx = np.gradient(magnitude, pixel_mm, axis=(1, 2))
    gradient = np.hypot(gx, gy)[:, mask]
    length = np.median(np.mean(inside, axis=1) / np.maximum(np.mean(gradient, axis=1), 1e-12))
    pairs = [(c, d) for c in range(coils) for d in range(c + 1, coils)]
    if len(pairs) > 120:  # large arrays: an even sample of the pairs
        pairs = pairs[:: len(pairs) // 120]
    gradients, spans = [], []
    for c, d in pairs:
        relative = maps[c] * np.conj(maps[d])
        unit = relative / np.maximum(np.abs(relative), 1e-12)
        # the gradient of the angle without unwrapping: Im(conj(u) grad u)
        uy, ux = np.gradient(unit, pixel_mm, axis=(0, 1))
        rate = np.hypot(np.imag(np.conj(unit) * ux), np.imag(np.conj(unit) * uy))
        gradients.append(np.mean(rate[mask]) * 10.0)
        resultant = np.abs(np.mean(unit[mask]))
        spans.append(np.sqrt(-2.0 * np.log(max(resultant, 1e-12))))
    energy = np.linalg.svd(maps[:, mask], compute_uv=False) ** 2
    share = np.cumsum(energy) / np.sum(energy)
    effective = float(np.searchsorted(share, 0.9) + 1)
    return CoilMeasures(float(falloff), float(length), float(np.median(gradients)), float(np.median(spans)), effective)


def noise_correlation(noise: np.ndarray) -> tuple[float, float] | tuple[None, None]:
    """(mean, max) of the off-diagonal |correlation| of noise samples (C, N); None where a coil's
    samples are all zero (a background masked in the file)."""
    covariance = noise @ noise.conj().T / noise.shape[1]
    std = np.sqrt(np.real(np.diag(covariance)))
    if np.any(std == 0):
        return None, None
    return correlation_summary(covariance / np.outer(std, std))


def correlation_summary(correlation: np.ndarray) -> tuple[float, float]:
    off = np.abs(correlation[~np.eye(len(correlation), dtype=bool)])
    return float(off.mean()), float(off.max())


def synthesize_like(
    magnitude: np.ndarray, pixel_mm: float, coils: int, seed: int, model: str = "cylinder", noise: float = 0.0,
    options: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Coil images (C, H, W) complex64 that the coil model gives for one real slice's RSS magnitude
    (H, W) at `pixel_mm`, and the array's noise covariance; `noise`: receiver sigma (magnitude units).
    The slice is zero-padded to a square for the encoder and cropped back."""
    from kspacify.coils import VolumeCoils, body_from_volume, create, slice_positions

    height, width = magnitude.shape
    size = max(height, width) + (max(height, width) % 2)
    top, left = (size - height) // 2, (size - width) // 2
    square = np.zeros((size, size), np.float32)
    square[top : top + height, left : left + width] = magnitude
    scale = float(np.percentile(magnitude, 99))
    body = body_from_volume(square[None], (1.0, pixel_mm, pixel_mm), scale, np.array([0.0, 0.0, 1.0]))
    array = create(model, coils, options).draw(body, np.random.default_rng(seed))
    encoder = VolumeCoils(array, size, pixel_mm, slice_positions(1, 1.0), noise)
    out: dict[str, np.ndarray] = {}
    encoder.encode(0, square[None], np.zeros((1, size, size), np.float32), np.random.default_rng(seed + 1),
                   lambda index, kspace, rss: out.update(kspace=kspace[0].copy()))  # fmt: skip
    images = ifft2c(out["kspace"])[:, top : top + height, left : left + width]
    return images.astype(np.complex64), array.noise_covariance
