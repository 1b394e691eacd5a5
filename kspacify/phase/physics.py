"""`physics`: a phase map drawn from a simple physical model of the acquisition.

For each slice the phase is the sum of

(a) B0 off-resonance: a susceptibility map built from a tissue/air mask of the magnitude is turned into
    a field (ppm) with the dipole kernel, a second-order "shim" fit over the tissue is removed and a
    random low-order residual shim field is added; ppm x gamma-bar x B0 x TE gives radians;
(b) a smooth receive/transmit (B1) phase: a random linear ramp plus a few broad Gaussian bumps, scaled
    with B0 (the B1 phase grows with frequency);
(c) a global phase offset, uniform in [-pi, pi);
(d) noise: the complex pixel is a*exp(i*phase) + sigma*(n1 + i*n2) with a = magnitude x soft tissue
    weight and sigma the noise measured in the tissue (`tissue_noise`; or the noise-floor estimate of
    `noise_and_mask`), so background pixels (a = 0) get uniform phase, tissue gets a phase noise of
    about sigma/a rad, with a soft transition at the object edge. `ReceiverNoise`
    (options every method that draws the noise floor shares) can scale and correlate the noise, and
    take a = sqrt(max(magnitude^2 - 2 sigma^2, 0)) instead (everywhere, or outside the tissue only),
    the signal a magnitude of that noise implies, so that faint signal below the tissue threshold
    keeps coherent phase (`received_phase`).

All random parameters are drawn from the ranges in `PhysicsSettings` with the passed generator only.

The acquisition (`kspacify.acquisition.Acquisition`, from the volume's headers) replaces draws with
facts where it knows them: the field strength sets B0 (and so the coil-phase scale), the slice
orientation sets the B0 direction (the head-foot axis in slice coordinates), and the echo decides
the B0 term: a gradient echo accumulates the field offset for its real TE, a spin echo refocuses it,
so only a residual remains, as if the echo were off the spin-echo time by a small `spin_echo_residual_ms`
(eddy currents, imperfect refocusing), while the coil phase stays. Unknown fields keep the draws, and
a wholly unknown acquisition gives exactly the phase of an acquisition-agnostic call.

Dipole approximation (see `dipole_kernel`): the 2D slice is taken to be the central plane of a slab of
half-thickness h in which the susceptibility does not vary through-plane; averaging the 3D kernel
1/3 - (b.k)^2/|k|^2 over the slab in closed form gives

    D(k) = 1/3 - (b_p . k/|k|)^2 (1 - exp(-|k| h)) - b_n^2 exp(-|k| h)

(k in-plane, b_p the in-plane and b_n the through-plane component of the unit B0 direction). h -> inf
is the 3D kernel evaluated on the plane k_n = 0 (infinite cylinder), h -> 0 a thin sheet (1/3 - b_n^2);
D is continuous at k = 0 for finite h. The susceptibility is padded (symmetric extension, so objects cut
by the field of view continue instead of ending in an artificial air boundary) to `pad_factor` x size
before the FFT so the periodic copies do not overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.options import as_dict
from kspacify.phase.base import MethodSpec, wrap

GAMMA_BAR_HZ_PER_T = 42.577478e6  # proton gyromagnetic ratio / 2 pi
GAUSS_MAD = 0.6744897501960817  # median |N(0, 1)|
CHUNK = 16  # slices rendered at once by `synthesize`


MAX_NOISE_CORRELATION = 0.7  # 2a / (1 + 2a^2) peaks at 1 / sqrt(2)


@dataclass(frozen=True)
class ReceiverNoise:
    """How synthesized phase receives the measurement noise: the options of every method that draws
    the noise floor (`physics`, and `sbdm` / `gan` with background=noise). The defaults are the
    original model; docs/phase-methods.md measures the others on real spin echoes."""

    noise_gain: float = field(default=1.0, metadata={"help": "receiver noise sigma = this x the magnitude's noise estimate"})
    noise_correlation: float = field(default=0.0, metadata={"help": "lag-1 correlation of neighbouring pixels' noise (0: white)"})
    noise_level: Literal["floor", "tissue"] = field(
        default="tissue",
        metadata={"help": "sigma measured in the magnitude's tissue (Immerkaer's operator in the eroded mask), or its noise-floor estimate"},
    )
    signal_amplitude: Literal["mask", "rician", "rician_outside"] = field(
        default="mask",
        metadata={"help": "signal under the noise: magnitude x tissue mask, sqrt(magnitude^2 - 2 sigma^2), or that outside the tissue only"},
    )

    method: ClassVar[str] = "receiver noise"  # names the method in errors

    def __post_init__(self) -> None:
        if not 0 < self.noise_gain <= 10:
            raise ValueError(f"{self.method}: noise_gain must be in (0, 10], got {self.noise_gain}")
        if not 0 <= self.noise_correlation <= MAX_NOISE_CORRELATION:
            raise ValueError(f"{self.method}: noise_correlation must be in [0, {MAX_NOISE_CORRELATION}], got {self.noise_correlation}")

    def receiver(self) -> ReceiverNoise:
        """Just these options, of a method's options that include them."""
        return ReceiverNoise(**{f.name: getattr(self, f.name) for f in fields(ReceiverNoise)})


@dataclass(frozen=True)
class PhysicsSettings(ReceiverNoise):
    """Ranges of the random parameters (drawn per slice) and fixed model constants.

    (lo, hi) pairs are ranges; "log" ranges are drawn log-uniformly, the others uniformly. Lengths
    given as "fov" are fractions of the larger image side; coordinates run over [-1, 1] across it.
    """

    # acquisition (draws used where the volume's acquisition does not say)
    b0_tesla: tuple[float, float] = (1.5, 7.0)  # log-uniform
    echo_time_ms: tuple[float, float] = (2.0, 30.0)  # log-uniform; gradient echoes
    spin_echo_residual_ms: tuple[float, float] = (0.0, 1.0)  # uniform; the B0 time of a spin echo's residual phase
    # susceptibility (ppm, SI volume susceptibility x 1e6)
    chi_tissue_ppm: float = -9.05  # water-like soft tissue
    chi_air_ppm: float = 0.36
    hole_air_fraction: tuple[float, float] = (0.0, 0.25)  # enclosed dark regions: bone/CSF/sinus mix
    chi_contrast_ppm: float = 0.15  # |slope| (ppm per unit magnitude) of magnitude-linked tissue variation
    chi_blob_ppm: float = 0.1  # |amplitude| of random smooth tissue variations (veins, iron, fat)
    chi_blob_count: int = 3
    chi_blob_width_fov: tuple[float, float] = (0.03, 0.15)
    slab_half_thickness_fov: tuple[float, float] = (0.15, 1.0)  # through-plane extent of the object
    # B0 direction: uniform on the sphere relative to the slice (orientation is unknown)
    # shim: a 2nd-order fit of the susceptibility field over the tissue is removed, then a random
    # residual polynomial is added (ppm at the edge of the field of view)
    shim_linear_ppm: float = 0.3
    shim_quadratic_ppm: float = 0.15
    # B1 (coil) phase, radians at 3 T (scaled by B0 / 3 T)
    coil_ramp_rad: float = 1.0  # |ramp| across half the field of view
    coil_bump_rad: float = 1.0  # |amplitude| of each broad bump
    coil_bump_count: int = 3
    coil_bump_width_fov: tuple[float, float] = (0.3, 1.0)
    # tissue mask and noise
    mask_noise_multiple: float = 4.0  # tissue threshold = this x noise sigma ...
    mask_floor: float = 0.02  # ... but at least this (normalized magnitude) and at most Otsu's threshold
    edge_smoothing_px: float = 1.0  # Gaussian blur of the tissue mask (soft edge)
    noise_floor: float = 0.005  # minimum noise sigma used for the phase noise
    # numerics
    pad_factor: float = 2.0
    shared_across_batch: bool = False  # True: one acquisition (B0, TE, direction, shim, coil) per batch

    method: ClassVar[str] = "physics phase"

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and not (len(value) == 2 and value[0] <= value[1]):
                raise ValueError(f"physics phase: {f.name} must be a (lo, hi) pair, lo <= hi; got {value}")
        if not (self.b0_tesla[0] > 0 and self.echo_time_ms[0] > 0 and self.spin_echo_residual_ms[0] >= 0):
            raise ValueError("physics phase: b0_tesla and echo_time_ms must be positive, spin_echo_residual_ms >= 0")
        if self.b0_tesla[1] > 20 or self.echo_time_ms[1] > 1000 or self.spin_echo_residual_ms[1] > 100:
            raise ValueError("physics phase: b0_tesla <= 20 T, echo_time_ms <= 1000 and spin_echo_residual_ms <= 100 ms")
        if self.pad_factor < 1:
            raise ValueError(f"physics phase: pad_factor must be >= 1, got {self.pad_factor}")
        if not (0 <= self.chi_blob_count <= 64 and 0 <= self.coil_bump_count <= 64):
            raise ValueError("physics phase: blob/bump counts must be in [0, 64]")
        if self.pad_factor > 8:
            raise ValueError(f"physics phase: pad_factor must be at most 8, got {self.pad_factor}")
        if self.slab_half_thickness_fov[0] <= 0:
            raise ValueError("physics phase: slab_half_thickness_fov must be > 0")


@dataclass
class Draw:
    """The random parameters of one batch; arrays have a leading batch axis."""

    b0_tesla: np.ndarray  # (B,)
    echo_time_s: np.ndarray  # (B,)
    b0_direction: np.ndarray  # (B, 3): (x = columns, y = rows, n = slice normal), unit length
    half_thickness_fov: np.ndarray  # (B,)
    hole_air_fraction: np.ndarray  # (B,)
    chi_contrast: np.ndarray  # (B,)
    chi_blobs: np.ndarray  # (B, K, 4): amplitude ppm, x0, y0, width (fov)
    shim: np.ndarray  # (B, 3, 3): coefficient of y^i x^j (i + j <= 2), ppm
    coil_ramp: np.ndarray  # (B, 2): rad at x = 1, y = 1
    coil_bumps: np.ndarray  # (B, K, 4): amplitude rad, x0, y0, width (fov)
    offset: np.ndarray  # (B,)

    def take(self, part: slice) -> Draw:
        """The draws of the slices `part` of the batch."""
        return Draw(**{f.name: getattr(self, f.name)[part] for f in fields(self)})


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = lo_hi
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))


def draw_parameters(settings: PhysicsSettings, rng: np.random.Generator, batch: int, acquisition: Acquisition = UNKNOWN) -> Draw:
    """The random parameters of a batch; what `acquisition` knows replaces the draw (drawn anyway, so
    the generator advances the same way whatever is known)."""
    s = settings
    n = 1 if s.shared_across_batch else batch
    b0 = _log_uniform(rng, s.b0_tesla, n)
    if acquisition.field_strength_t is not None:
        b0 = np.full(n, acquisition.field_strength_t)
    te = _log_uniform(rng, s.echo_time_ms, n) * 1e-3
    if acquisition.refocused is False and acquisition.echo_time_ms is not None:
        te = np.full(n, acquisition.echo_time_ms * 1e-3)
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    if acquisition.b0_direction is not None:
        direction = np.tile(np.asarray(acquisition.b0_direction, dtype=np.float64), (n, 1))
    thickness = rng.uniform(*s.slab_half_thickness_fov, size=n)
    shim = np.zeros((n, 3, 3))
    shim[:, 0, 1] = rng.uniform(-1, 1, n) * s.shim_linear_ppm  # x
    shim[:, 1, 0] = rng.uniform(-1, 1, n) * s.shim_linear_ppm  # y
    shim[:, 0, 2] = rng.uniform(-1, 1, n) * s.shim_quadratic_ppm  # x^2
    shim[:, 2, 0] = rng.uniform(-1, 1, n) * s.shim_quadratic_ppm  # y^2
    shim[:, 1, 1] = rng.uniform(-1, 1, n) * s.shim_quadratic_ppm  # xy
    coil_scale = b0 / 3.0
    ramp = rng.uniform(-1, 1, (n, 2)) * s.coil_ramp_rad * coil_scale[:, None]
    bumps = np.empty((n, s.coil_bump_count, 4))
    bumps[..., 0] = rng.uniform(-1, 1, (n, s.coil_bump_count)) * s.coil_bump_rad * coil_scale[:, None]
    bumps[..., 1:3] = rng.uniform(-1.5, 1.5, (n, s.coil_bump_count, 2))  # coils sit around the object
    bumps[..., 3] = rng.uniform(*s.coil_bump_width_fov, (n, s.coil_bump_count))
    # object properties: always per slice
    hole = rng.uniform(*s.hole_air_fraction, size=batch)
    contrast = rng.uniform(-1, 1, batch) * s.chi_contrast_ppm
    blobs = np.empty((batch, s.chi_blob_count, 4))
    blobs[..., 0] = rng.uniform(-1, 1, (batch, s.chi_blob_count)) * s.chi_blob_ppm
    blobs[..., 1:3] = rng.uniform(-0.8, 0.8, (batch, s.chi_blob_count, 2))
    blobs[..., 3] = rng.uniform(*s.chi_blob_width_fov, (batch, s.chi_blob_count))
    offset = rng.uniform(-np.pi, np.pi, size=n)
    if acquisition.refocused is True:  # drawn last: an unknown acquisition draws exactly what it always drew
        te = rng.uniform(*s.spin_echo_residual_ms, size=n) * 1e-3

    def per_slice(a: np.ndarray) -> np.ndarray:
        return np.repeat(a, batch, axis=0) if n == 1 and batch != 1 else a

    return Draw(
        b0_tesla=per_slice(b0),
        echo_time_s=per_slice(te),
        b0_direction=per_slice(direction),
        half_thickness_fov=per_slice(thickness),
        hole_air_fraction=hole,
        chi_contrast=contrast,
        chi_blobs=blobs,
        shim=per_slice(shim),
        coil_ramp=per_slice(ramp),
        coil_bumps=per_slice(bumps),
        offset=per_slice(offset),
    )


# --- physics building blocks (public for tests) -------------------------------------------------


def offresonance_phase(
    field_ppm: np.ndarray, b0_tesla: np.ndarray | float, echo_time_s: np.ndarray | float
) -> np.ndarray:
    """Phase (rad, unwrapped) after echo time TE from a field offset dB in ppm: 2 pi gamma-bar B0 TE dB."""
    b0 = np.asarray(b0_tesla, dtype=np.float64)
    te = np.asarray(echo_time_s, dtype=np.float64)
    scale = 2.0 * np.pi * GAMMA_BAR_HZ_PER_T * 1e-6 * b0 * te
    field = np.asarray(field_ppm)
    scale = scale.reshape(scale.shape + (1,) * (field.ndim - scale.ndim)) if scale.ndim else scale
    return (field * scale).astype(np.float32)


def dipole_kernel(
    shape: tuple[int, int], b0_direction: np.ndarray, half_thickness_px: np.ndarray | float
) -> np.ndarray:
    """The slab-averaged dipole kernel on an rfft2 grid of `shape`, (B, H, W//2 + 1) float32.

    `b0_direction`: (3,) or (B, 3) unit vectors (x = columns, y = rows, n = slice normal);
    `half_thickness_px`: slab half-thickness h in pixels, scalar or (B,); np.inf gives the infinite
    cylinder (3D kernel on the plane k_n = 0), where k = 0 takes the angular average 1/3 - |b_p|^2 / 2.
    """
    height, width = shape
    b = np.atleast_2d(np.asarray(b0_direction, dtype=np.float64))
    h = np.broadcast_to(np.asarray(half_thickness_px, dtype=np.float64), (b.shape[0],))
    infinite = np.isinf(h)
    ky = (2 * np.pi * np.fft.fftfreq(height))[:, None]
    kx = (2 * np.pi * np.fft.rfftfreq(width))[None, :]
    k = np.sqrt(kx**2 + ky**2)
    k_safe = np.where(k > 0, k, 1.0)
    cxx, cxy, cyy = ((kx * kx) / k_safe**2, (kx * ky) / k_safe**2, (ky * ky) / k_safe**2)  # 0 at k = 0
    k, cxx, cxy, cyy = (a.astype(np.float32) for a in (k, cxx, cxy, cyy))
    kernel = np.empty((b.shape[0], height, width // 2 + 1), dtype=np.float32)
    for i, (bx, by, bn) in enumerate(b):
        proj2 = np.float32(bx * bx) * cxx + np.float32(2 * bx * by) * cxy + np.float32(by * by) * cyy
        if infinite[i]:
            kernel[i] = 1.0 / 3.0 - proj2
            kernel[i, 0, 0] = 1.0 / 3.0 - 0.5 * (bx * bx + by * by)
        else:
            decay = np.exp(-np.float32(h[i]) * k)
            kernel[i] = 1.0 / 3.0 - proj2 + decay * (proj2 - np.float32(bn * bn))
    return kernel


def _padded_shape(height: int, width: int, pad_factor: float) -> tuple[int, int]:
    return (
        sfft.next_fast_len(int(np.ceil(height * pad_factor)), real=True),
        sfft.next_fast_len(int(np.ceil(width * pad_factor)), real=True),
    )


def dipole_field(
    chi: np.ndarray,
    b0_direction: np.ndarray,
    half_thickness_px: np.ndarray | float,
    pad_factor: float = 2.0,
    pad_mode: str = "symmetric",
) -> np.ndarray:
    """Field offset (same units as chi, e.g. ppm) of a susceptibility slice or batch (B, H, W).

    The map is padded (`pad_mode`, see np.pad; "constant" pads with 0 = the reference medium) to
    `pad_factor` x size, filtered with `dipole_kernel`, and cropped back.
    """
    squeeze = chi.ndim == 2
    chi3 = chi[None] if squeeze else chi
    _, height, width = chi3.shape
    hp, wp = _padded_shape(height, width, pad_factor)
    top, left = (hp - height) // 2, (wp - width) // 2
    padded = np.pad(  # type: ignore[call-overload]
        chi3.astype(np.float32, copy=False),
        ((0, 0), (top, hp - height - top), (left, wp - width - left)),
        mode=pad_mode,
    )
    kernel = dipole_kernel((hp, wp), b0_direction, half_thickness_px)
    field = sfft.irfft2(sfft.rfft2(padded) * kernel, s=(hp, wp))
    field = field[:, top : top + height, left : left + width].astype(np.float32)
    return field[0] if squeeze else field


def _otsu(magnitude: np.ndarray, bins: int = 256) -> np.ndarray:
    """Otsu threshold per slice on magnitude clipped to [0, 1]: (B,)."""
    batch = magnitude.shape[0]
    idx = np.clip(magnitude * bins, 0, bins - 1).astype(np.int64).reshape(batch, -1)
    idx += (np.arange(batch) * bins)[:, None]
    hist = np.bincount(idx.ravel(), minlength=batch * bins).reshape(batch, bins).astype(np.float64)
    p = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    omega = np.cumsum(p, axis=1)
    mu = np.cumsum(p * np.arange(bins), axis=1)
    mu_t = mu[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * omega - mu) ** 2 / (omega * (1 - omega))
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    return (np.argmax(between, axis=1) + 1) / bins


_LAPLACE_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)  # Immerkaer (1996)


def _immerkaer_sigma(magnitude: np.ndarray) -> np.ndarray:
    """|Immerkaer's operator| / (6 x median |N(0, 1)|), per pixel of (B, H, W): its median over a
    region is the sigma of Gaussian noise there (linear trends give no response)."""
    return np.abs(ndimage.convolve(magnitude, _LAPLACE_DIFFERENCE[None], mode="nearest")) / (GAUSS_MAD * 6.0)


def noise_and_mask(
    magnitude: np.ndarray, settings: PhysicsSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise sigma (B,), hard tissue mask (B, H, W) bool and soft tissue weight (B, H, W) float32.

    sigma is the smaller of two estimates: the mode of the histogram of non-zero pixels below Otsu's
    threshold (the Rayleigh peak of a noise background; exact zeros, i.e. masked backgrounds, are
    ignored) and the median absolute response of Immerkaer's noise operator (a difference of
    Laplacians, blind to linear trends) over pixels above Otsu's threshold (Gaussian noise in tissue).
    Each can only overestimate (no background / textured tissue), hence the minimum. Tissue is
    magnitude above min(Otsu, max(mask_noise_multiple x sigma, mask_floor)).
    """
    batch = magnitude.shape[0]
    otsu = _otsu(magnitude)
    laplace = _immerkaer_sigma(magnitude)
    sigma = np.zeros(batch)
    threshold = np.empty(batch)
    for i in range(batch):
        m = magnitude[i]
        estimates = []
        low = m[(m > 0) & (m < otsu[i])]
        if low.size >= max(16, m.size // 100):
            counts, edges = np.histogram(low, bins=128, range=(0.0, otsu[i]))
            peak = int(np.argmax(ndimage.gaussian_filter1d(counts.astype(np.float64), 1.5)))
            estimates.append(0.5 * (edges[peak] + edges[peak + 1]))
        bright = laplace[i][m > otsu[i]]
        if bright.size >= 16:
            estimates.append(float(np.median(bright)))
        sigma[i] = min(estimates) if estimates else 0.0
        threshold[i] = min(otsu[i], max(settings.mask_noise_multiple * sigma[i], settings.mask_floor))
    mask = magnitude > threshold[:, None, None]
    s = settings.edge_smoothing_px
    weight = mask.astype(np.float32)
    if s > 0:
        weight = ndimage.gaussian_filter(weight, sigma=(0, s, s), mode="nearest")
    return sigma, mask, weight


def measured_phase(
    phase: np.ndarray, amplitude: np.ndarray, sigma: np.ndarray, rng: np.random.Generator, correlation: float = 0.0
) -> np.ndarray:
    """The angle of amplitude x exp(i phase) + sigma (n1 + i n2): what a receiver measures. Where the
    amplitude is at the noise floor the phase becomes uniform noise, in tissue it scatters by about
    sigma / amplitude radians. `sigma` is one value per slice. n1, n2 are white, or with
    `correlation` > 0 correlated by that much between horizontal and vertical neighbours (still of
    unit variance: `receiver_noise`)."""
    noise = np.asarray(sigma, dtype=np.float32)[:, None, None]
    re = amplitude * np.cos(phase) + noise * receiver_noise(amplitude.shape, rng, correlation)
    im = amplitude * np.sin(phase) + noise * receiver_noise(amplitude.shape, rng, correlation)
    return np.arctan2(im, re).astype(np.float32)


def receiver_noise(shape: tuple[int, ...], rng: np.random.Generator, correlation: float = 0.0) -> np.ndarray:
    """Unit-variance Gaussian noise (float32) over the last two axes, its lag-1 correlation along each
    of them `correlation`: white noise filtered by the separable kernel [a, 1, a] / sqrt(1 + 2a^2),
    whose lag-1 correlation is 2a / (1 + 2a^2) (circular at the edges). 0: white, the generator's
    draws unchanged."""
    white = rng.standard_normal(shape, dtype=np.float32)
    if correlation == 0:
        return white
    a = (1 - np.sqrt(1 - 2 * correlation**2)) / (2 * correlation)
    kernel = (np.array([a, 1, a]) / np.sqrt(1 + 2 * a * a)).astype(np.float32)
    along_rows = ndimage.correlate1d(white, kernel, axis=-2, mode="wrap")
    return ndimage.correlate1d(along_rows, kernel, axis=-1, mode="wrap")


def received_phase(phase: np.ndarray, magnitude: np.ndarray, sigma: np.ndarray, weight: np.ndarray,
                   rng: np.random.Generator, settings: PhysicsSettings) -> np.ndarray:  # fmt: skip
    """`measured_phase` of `phase` under `settings`' receiver noise, given the magnitude's noise-floor
    estimate `sigma` (B,) and soft tissue weight w. The noise is `noise_gain` x the noise measured in
    the tissue (`noise_level=tissue`: `tissue_noise`) or x `sigma` (`floor`), at least `noise_floor`.
    The signal amplitude is magnitude x w (`mask`), or the amplitude a = sqrt(max(m^2 - 2 sigma^2, 0))
    that a magnitude m with floor noise sigma implies (E[m^2] = a^2 + 2 sigma^2): everywhere
    (`rician`), or max(m w, (1 - w) a) (`rician_outside`), which is m w wherever w >= 1/2 (tissue and
    its soft edge as with `mask`) and a outside, where the mask would turn faint signal into noise."""
    sigma = np.maximum(sigma, settings.noise_floor).astype(np.float32)
    amplitude = magnitude * weight
    noise = sigma if settings.noise_level == "floor" else np.maximum(tissue_noise(magnitude, weight, sigma), settings.noise_floor)
    if settings.signal_amplitude != "mask":
        implied = np.sqrt(np.maximum(magnitude * magnitude - 2 * sigma[:, None, None] ** 2, 0))
        amplitude = implied if settings.signal_amplitude == "rician" else np.maximum(amplitude, (1 - weight) * implied)
    return measured_phase(phase, amplitude, settings.noise_gain * noise, rng, settings.noise_correlation)


TISSUE_EROSION_PX = 3  # keeps the tissue estimate off the object's edge
TISSUE_MIN_PIXELS = 256


def tissue_noise(magnitude: np.ndarray, weight: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Noise sigma (B,) measured where the phase is measured: the median absolute response of
    Immerkaer's operator over the tissue (weight >= 1/2) eroded by `TISSUE_EROSION_PX`, or `fallback`
    for a slice with fewer than `TISSUE_MIN_PIXELS` such pixels. On the real spin echoes it follows the
    complex-domain noise in tissue from slice to slice (ratio 0.82, coefficient of variation 4%; the
    floor estimate's: 1.33, 13%: `benchmarks/receiver_noise_facts.py`)."""
    laplace = _immerkaer_sigma(magnitude)
    sigma = np.asarray(fallback, dtype=np.float32).copy()
    for i in range(magnitude.shape[0]):
        tissue = ndimage.binary_erosion(weight[i] >= 0.5, iterations=TISSUE_EROSION_PX)
        if tissue.sum() >= TISSUE_MIN_PIXELS:
            sigma[i] = float(np.median(laplace[i][tissue]))
    return sigma


def with_measurement_noise(magnitude: np.ndarray, phase: np.ndarray, rng: np.random.Generator,
                           noise: ReceiverNoise | None = None) -> np.ndarray:  # fmt: skip
    """`received_phase` with the noise level and soft tissue weight estimated from the magnitude (the
    `physics` model's rules) and the receiver options `noise`: how learned methods give the
    noise-only background the phase real data has."""
    settings = noise if isinstance(noise, PhysicsSettings) else PhysicsSettings(**as_dict((noise or ReceiverNoise()).receiver()))
    sigma, _, weight = noise_and_mask(magnitude, settings)
    return received_phase(phase, magnitude, sigma, weight, rng, settings)


def _coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    half = max(height, width) / 2.0
    y = (np.arange(height) - (height - 1) / 2.0) / half
    x = (np.arange(width) - (width - 1) / 2.0) / half
    return y, x


def _gaussian_bumps(y: np.ndarray, x: np.ndarray, bumps: np.ndarray) -> np.ndarray:
    """Sum over k of amp_k exp(-|r - r_k|^2 / (2 w_k^2)), w in fov (= 2 coordinate units): (B, H, W)."""
    if bumps.shape[1] == 0:
        return np.zeros((bumps.shape[0], y.size, x.size), dtype=np.float32)
    amp, x0, y0, w = (bumps[..., i] for i in range(4))
    w = 2.0 * w  # fov fraction -> coordinate units
    gy = np.exp(-((y[None, :, None] - y0[:, None, :]) ** 2) / (2 * w[:, None, :] ** 2))  # (B, H, K)
    gx = np.exp(-((x[None, None, :] - x0[:, :, None]) ** 2) / (2 * w[:, :, None] ** 2))  # (B, K, W)
    return np.matmul(gy * amp[:, None, :], gx).astype(np.float32)


def _polynomial(y: np.ndarray, x: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """sum_ij c_ij y^i x^j with c (B, 3, 3): (B, H, W)."""
    py = np.stack([np.ones_like(y), y, y**2], axis=1)  # (H, 3)
    px = np.stack([np.ones_like(x), x, x**2], axis=0)  # (3, W)
    return np.matmul(np.matmul(py[None], coefficients), px[None]).astype(np.float32)


def _remove_shim_fit(field: np.ndarray, weight: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Subtract the weighted least-squares 2nd-order polynomial fit of each slice (an ideal shim)."""
    batch, height, width = field.shape
    yy, xx = np.meshgrid(y, x, indexing="ij")
    basis = np.stack([np.ones_like(yy), xx, yy, xx**2, xx * yy, yy**2]).reshape(6, -1).astype(np.float32)
    w = weight.reshape(batch, -1)
    weighted = w[:, None, :] * basis[None]  # (B, 6, N)
    normal = np.matmul(weighted, basis.T).astype(np.float64)  # (B, 6, 6)
    rhs = np.matmul(weighted, field.reshape(batch, -1, 1)).astype(np.float64)  # (B, 6, 1)
    ridge = 1e-6 * (np.trace(normal, axis1=1, axis2=2)[:, None, None] + 1.0) * np.eye(6)
    coefficients = np.linalg.solve(normal + ridge, rhs).astype(np.float32)  # (B, 6, 1)
    fit = np.matmul(coefficients.transpose(0, 2, 1), basis).reshape(batch, height, width)
    return field - fit


def susceptibility(magnitude: np.ndarray, mask: np.ndarray, draw: Draw, s: PhysicsSettings) -> np.ndarray:
    """Susceptibility relative to air (ppm), (B, H, W) float32.

    Background connected to the image border is air (0); dark regions enclosed by tissue ("holes":
    bone, CSF, sinuses) get tissue + hole_air_fraction x (air - tissue); tissue gets chi_tissue - chi_air
    plus a magnitude-linked variation and a few random smooth blobs; the map is blurred by
    edge_smoothing_px.
    """
    batch, height, width = magnitude.shape
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(~mask, structure=structure)
    border = np.zeros_like(mask)
    border[:, 0, :] = border[:, -1, :] = border[:, :, 0] = border[:, :, -1] = True
    outside_labels = np.unique(labels[border & ~mask])
    outside = np.isin(labels, outside_labels[outside_labels > 0])
    holes = ~mask & ~outside
    delta = s.chi_tissue_ppm - s.chi_air_ppm
    hole_chi = delta * (1.0 - draw.hole_air_fraction)[:, None, None]
    y, x = _coordinates(height, width)
    contrast = np.empty(batch, dtype=np.float32)
    for i in range(batch):
        inside = magnitude[i][mask[i]]
        contrast[i] = np.median(inside) if inside.size else 0.0
    variation = draw.chi_contrast[:, None, None] * (magnitude - contrast[:, None, None])
    variation += _gaussian_bumps(y, x, draw.chi_blobs)
    chi = np.where(mask, delta + variation, np.where(holes, hole_chi, 0.0)).astype(np.float32)
    e = s.edge_smoothing_px
    return ndimage.gaussian_filter(chi, sigma=(0, e, e), mode="nearest") if e > 0 else chi


@dataclass
class Components:
    """The terms of one synthesized batch (all (B, H, W) float32 except sigma)."""

    field_ppm: np.ndarray  # shimmed B0 field offset
    b0_phase: np.ndarray  # unwrapped, rad
    coil_phase: np.ndarray  # rad
    offset: np.ndarray  # (B,) rad
    weight: np.ndarray  # soft tissue weight
    sigma: np.ndarray  # (B,) noise estimate
    phase: np.ndarray  # final, wrapped


class PhysicsPhase:
    name = "physics"

    def __init__(self, settings: PhysicsSettings | None = None) -> None:
        self.config = settings if settings is not None else PhysicsSettings()

    def settings(self) -> dict[str, Any]:
        return as_dict(self.config)

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN) -> np.ndarray:
        magnitude = np.asarray(magnitude, dtype=np.float32)
        if magnitude.ndim != 3:
            raise ValueError(f"physics phase: magnitude must be (batch, H, W), got shape {magnitude.shape}")
        draw = draw_parameters(self.config, rng, magnitude.shape[0], acquisition)
        phase = np.empty(magnitude.shape, dtype=np.float32)
        for start in range(0, magnitude.shape[0], CHUNK):  # bounds memory (padded FFTs) for whole volumes
            part = slice(start, start + CHUNK)
            phase[part] = self.components(magnitude[part], rng, draw=draw.take(part)).phase
        return phase

    def components(
        self, magnitude: np.ndarray, rng: np.random.Generator, draw: Draw | None = None, acquisition: Acquisition = UNKNOWN
    ) -> Components:
        """All terms of the phase; pass `draw` to reuse fixed parameters (rng then only drives noise)."""
        magnitude = np.asarray(magnitude, dtype=np.float32)
        if magnitude.ndim != 3:
            raise ValueError(f"physics phase: magnitude must be (batch, H, W), got shape {magnitude.shape}")
        magnitude = np.nan_to_num(np.maximum(magnitude, 0.0))
        s = self.config
        batch, height, width = magnitude.shape
        if draw is None:
            draw = draw_parameters(s, rng, batch, acquisition)
        y, x = _coordinates(height, width)
        sigma, mask, weight = noise_and_mask(magnitude, s)

        # (a) B0: susceptibility field, ideal 2nd-order shim over the tissue, residual shim field
        chi = susceptibility(magnitude, mask, draw, s)
        half_thickness = draw.half_thickness_fov * max(height, width)
        field = dipole_field(chi, draw.b0_direction, half_thickness, s.pad_factor)
        field = _remove_shim_fit(field, weight, y, x) + _polynomial(y, x, draw.shim)
        b0_phase = offresonance_phase(field, draw.b0_tesla, draw.echo_time_s)

        # (b) coil phase
        coil = _gaussian_bumps(y, x, draw.coil_bumps)
        ramp_x, ramp_y = draw.coil_ramp[:, 0, None, None], draw.coil_ramp[:, 1, None, None]
        coil += (ramp_x * x[None, None, :] + ramp_y * y[None, :, None]).astype(np.float32)

        # (c) global offset, (d) noise
        clean = b0_phase + coil + draw.offset[:, None, None].astype(np.float32)
        phase = wrap(received_phase(clean, magnitude, sigma, weight, rng, s))
        return Components(
            field_ppm=field,
            b0_phase=b0_phase,
            coil_phase=coil,
            offset=draw.offset,
            weight=weight,
            sigma=sigma,
            phase=phase,
        )


METHOD = MethodSpec(
    name="physics",
    summary="physics model: dipole B0 field of a tissue/air mask, shim, coil phase, noisy background",
    options=PhysicsSettings,
    build=lambda options, device: PhysicsPhase(options),
    auto_rank=50,
    usable=lambda device, acquisition=UNKNOWN: (True, "model-free physics model"),  # type: ignore[misc]
    uses=("field_strength_t", "echo_time_ms", "refocused (spin or gradient echo)", "b0_direction (slice orientation)"),
)
