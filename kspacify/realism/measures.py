"""Per-slice phase statistics and the distances between sets of them (numpy only, no torch).

Two summaries are computed per slice, inside the object (the tissue mask of the magnitude, from the
same noise-floor rule the `physics` phase model uses, `kspacify.phase.physics.noise_and_mask`):

* `gradient_histograms`: the magnitude-weighted histogram of log10 |grad exp(i phase)| (rad/pixel).
  It captures how fast the phase turns at the pixel scale: noise (large, ~1 rad/px), field-induced
  wraps near air/tissue boundaries (medium), smooth coil/B0 phase (small), a constant phase (none).
  The magnitude weight makes bright, high-SNR tissue count most, where real phase is structure
  rather than noise.
* `radial_spectra`: the radial power spectrum of exp(i phase) inside the object, estimated from the
  mask-corrected autocorrelation of the phasor (so the outline of the object does not enter the
  spectrum). It captures at which spatial scales the phase varies: a smooth field keeps its power
  at low frequencies, noise spreads it flat up to Nyquist, sharp wraps give a power-law tail.

Both are invariant to a global phase offset (which carries no information in MRI) and both use
only pixels inside the object: the background phase is left to the feature-network measure, which
sees the whole image. Sets are compared with `histogram_distance` (1D Wasserstein-1 in decades
of rad/pixel), `spectrum_distance` (RMS difference of log10 spectra, in decades) and
`frechet_distance` (on any feature vectors; the closed form for Gaussians).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from kspacify.phase.physics import PhysicsSettings, noise_and_mask

__all__ = [
    "GRADIENT_EDGES",
    "SPECTRUM_BINS",
    "SPECTRUM_FLOOR",
    "frechet_distance",
    "gaussian_frechet_distance",
    "gradient_histograms",
    "histogram_distance",
    "object_mask",
    "phase_vortices",
    "radial_spectra",
    "spectrum_distance",
    "spectrum_frequencies",
    "wasserstein_1d",
]

# log10 |grad| in rad/pixel: 1e-4 (flat) .. pi*sqrt(2) (the largest wrapped forward-difference norm)
GRADIENT_EDGES = np.linspace(-4.0, np.log10(np.pi * np.sqrt(2.0)), 65)
SPECTRUM_BINS = 20
SPECTRUM_FLOOR = 1e-3  # power density relative to white phase noise (= 1); below it differences are noise
WINDOW_FRACTION = 1.0 / 8.0  # Gaussian lag window sigma, as a fraction of the smaller image side
MIN_OVERLAP = 0.1  # autocorrelation lags kept only where the mask overlaps itself by >= this fraction

_MASK_SETTINGS = PhysicsSettings()


def _batch(magnitude: np.ndarray, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.asarray(magnitude, dtype=np.float32)
    phase = np.asarray(phase, dtype=np.float32)
    if magnitude.ndim == 2:
        magnitude, phase = magnitude[None], phase[None]
    if magnitude.ndim != 3 or magnitude.shape != phase.shape:
        raise ValueError(
            f"realism: magnitude and phase must both be (batch, H, W) (or (H, W)); got {magnitude.shape}, {phase.shape}"
        )
    return np.nan_to_num(np.maximum(magnitude, 0.0)), np.nan_to_num(phase)


def object_mask(magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hard tissue mask (B, H, W) bool and its soft-edged weight, by the `physics` model's noise-floor rule."""
    _, mask, weight = noise_and_mask(np.asarray(magnitude, dtype=np.float32), _MASK_SETTINGS)
    return mask, weight


def _wrapped(d: np.ndarray) -> np.ndarray:
    """Phase differences wrapped into [-pi, pi), in d's dtype."""
    return (d + d.dtype.type(np.pi)) % d.dtype.type(2 * np.pi) - d.dtype.type(np.pi)


def gradient_histograms(magnitude: np.ndarray, phase: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-slice weighted histograms of log10 |grad exp(i phase)|, (B, 64), each summing to 1.

    The gradient is the wrapped forward difference in x and y (rad/pixel; for a unit phasor
    |grad exp(i phi)| = |grad phi|), counted where the pixel and its two neighbours are in the object,
    weighted by the magnitude. Values below 1e-4 rad/px land in the first bin. A slice with no object
    pixels gets a row of NaN (skipped when sets are averaged).
    """
    magnitude, phase = _batch(magnitude, phase)
    if mask is None:
        mask, _ = object_mask(magnitude)
    batch = magnitude.shape[0]

    dx = _wrapped(phase[:, :-1, 1:] - phase[:, :-1, :-1])
    dy = _wrapped(phase[:, 1:, :-1] - phase[:, :-1, :-1])
    inside = mask[:, :-1, :-1] & mask[:, :-1, 1:] & mask[:, 1:, :-1]
    weight = (magnitude[:, :-1, :-1] * inside).reshape(batch, -1).astype(np.float64)
    log_gradient = np.log10(np.maximum(np.hypot(dx, dy), 1e-30)).reshape(batch, -1)
    bins = GRADIENT_EDGES.size - 1
    index = np.clip(np.searchsorted(GRADIENT_EDGES, log_gradient, side="right") - 1, 0, bins - 1)
    index += (np.arange(batch) * bins)[:, None]
    hist = np.bincount(index.ravel(), weights=weight.ravel(), minlength=batch * bins).reshape(batch, bins)
    total = hist.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hist / total, np.nan)


def phase_vortices(phase: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Phase singularities per slice, (B,) int: 2x2 pixel loops inside `mask` (all four corners)
    around which the wrapped phase differences add up to +-2 pi (a vortex; a smooth phase has none).

    A vortex cannot be smoothed away locally and winds the phase through every angle around it, so
    it shows as mid-frequency power in `radial_spectra`. Real coil-combined phase has them only
    where the magnitude, and so the signal, vanishes (and where noise dominates)."""
    phase = np.asarray(phase, dtype=np.float64).reshape(-1, *np.shape(phase)[-2:])
    mask = np.asarray(mask, dtype=bool).reshape(phase.shape)
    a, b, c, d = phase[:, :-1, :-1], phase[:, :-1, 1:], phase[:, 1:, 1:], phase[:, 1:, :-1]
    winding = np.rint((_wrapped(b - a) + _wrapped(c - b) + _wrapped(d - c) + _wrapped(a - d)) / (2 * np.pi))
    inside = mask[:, :-1, :-1] & mask[:, :-1, 1:] & mask[:, 1:, 1:] & mask[:, 1:, :-1]
    return (np.abs(winding) * inside).sum(axis=(1, 2)).astype(np.int64)


def spectrum_frequencies(size: int = 256) -> np.ndarray:
    """Edges (cycles/pixel) of the radial bins: the DC-to-1/size bin, then log-spaced up to Nyquist."""
    edges = np.geomspace(1.0 / size, 0.5, SPECTRUM_BINS)
    return np.concatenate([[0.0], edges])


def radial_spectra(magnitude: np.ndarray, phase: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Per-slice radial power spectral density of exp(i phase) inside the object, (B, 20).

    Estimator (a masked-correlation, Blackman-Tukey spectrum): with w the soft object mask and
    z = w exp(i phase), zero-padded to twice the size,
        C(r) = (z * z)(r) / (w * w)(r)        (* : autocorrelation, by FFT)
    is the mean of exp(i(phi(x) - phi(x + r))) over the pairs of object pixels a lag r apart, which
    does not depend on the object's outline. C is kept where the mask overlaps its shifted self by at
    least 10 %, tapered by a Gaussian lag window (sigma = 1/8 of the smaller side), and Fourier
    transformed. C(0) = 1, so the density is normalized: white phase noise has density 1 at every
    frequency. It is floored at 1e-3 and averaged over the radial bins of `spectrum_frequencies`
    (cycles/pixel, so images of one size compare directly). No object pixels: a row of NaN.
    """
    magnitude, phase = _batch(magnitude, phase)
    if weight is None:
        _, weight = object_mask(magnitude)
    batch, height, width = magnitude.shape
    shape = (2 * height, 2 * width)
    w = np.asarray(weight, dtype=np.float32)
    z = w * np.exp(1j * phase).astype(np.complex64)  # single precision: C is needed to ~1e-4 only
    auto_z = sfft.ifft2(np.abs(sfft.fft2(z, s=shape, axes=(1, 2))) ** 2, axes=(1, 2))
    auto_w = sfft.ifft2(np.abs(sfft.fft2(w, s=shape, axes=(1, 2))) ** 2, axes=(1, 2)).real
    overlap = auto_w[:, :1, :1]
    keep = auto_w > MIN_OVERLAP * overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(keep, auto_z / np.where(keep, auto_w, 1.0), 0.0)
    ly = np.fft.fftfreq(shape[0]) * shape[0]
    lx = np.fft.fftfreq(shape[1]) * shape[1]
    sigma = WINDOW_FRACTION * min(height, width)
    window = np.exp(-(ly[:, None] ** 2 + lx[None, :] ** 2) / (2.0 * sigma**2))
    density = np.maximum(sfft.fft2(correlation * window, axes=(1, 2)).real, SPECTRUM_FLOOR)

    fy = np.fft.fftfreq(shape[0])
    fx = np.fft.fftfreq(shape[1])
    radius = np.hypot(fy[:, None], fx[None, :]).ravel()
    edges = spectrum_frequencies(min(height, width))
    which = np.searchsorted(edges, radius, side="right") - 1
    inside = (which >= 0) & (which < edges.size - 1) & (radius <= 0.5)
    counts = np.bincount(which[inside], minlength=edges.size - 1)
    flat = density.reshape(batch, -1)[:, inside]
    spectra = np.stack([np.bincount(which[inside], weights=row, minlength=edges.size - 1) for row in flat])
    spectra = spectra / np.maximum(counts, 1)  # type: ignore[assignment]
    empty = overlap[:, 0, 0] <= 0
    spectra[empty] = np.nan
    return spectra


def _set_mean(rows: np.ndarray) -> np.ndarray | None:
    """Mean over the slices that have an object (rows without NaN); None when there is none."""
    rows = np.asarray(rows, dtype=np.float64)
    valid = rows[~np.isnan(rows).any(axis=1)] if rows.size else rows
    return valid.mean(axis=0) if len(valid) else None


def wasserstein_1d(p: np.ndarray, q: np.ndarray, bin_width: float = 1.0) -> float:
    """W1 between two histograms on the same bins: the area between their CDFs (x bin_width)."""
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    return float(np.sum(np.abs(np.cumsum(p) - np.cumsum(q))) * bin_width)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """W1 (decades of rad/pixel) between the mean gradient histograms of two sets; NaN if one set has no object.

    Symmetric, 0 for identical sets; 1.0 means, e.g., all gradients ten times larger."""
    pa, pb = _set_mean(a), _set_mean(b)
    if pa is None or pb is None:
        return float("nan")
    return wasserstein_1d(pa, pb, float(GRADIENT_EDGES[1] - GRADIENT_EDGES[0]))


def spectrum_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS over radial bins of log10(mean spectrum of a) - log10(mean spectrum of b), in decades.

    Symmetric, 0 for identical sets; NaN if one set has no object."""
    sa, sb = _set_mean(a), _set_mean(b)
    if sa is None or sb is None:
        return float("nan")
    return float(np.sqrt(np.mean((np.log10(sa) - np.log10(sb)) ** 2)))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def gaussian_frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance of N(mu1, cov1) and N(mu2, cov2):

        |mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2)

    computed with symmetric eigendecompositions (no complex sqrtm round-off), clipped at 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    root1 = _psd_sqrt(cov1)
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace = np.trace(cov1) + np.trace(cov2) - 2.0 * np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    return float(max(np.sum((mu1 - mu2) ** 2) + trace, 0.0))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (n, d) (sample covariance, ddof 1).

    Each set needs at least 2 rows; fewer, or a row with NaN, gives NaN. With few samples the
    estimate is biased upward (the bias shrinks about as 1/n): compare values at equal n, against a
    same-distribution floor (`docs/phase-methods.md` lists the sizes at which it separates methods)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: feature sets must be (n, d) with the same d; got {a.shape}, {b.shape}")
    if len(a) < 2 or len(b) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
