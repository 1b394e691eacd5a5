"""One volume's coil images -> multi-coil k-space and the root-sum-of-squares target.

For each slice, with S_c the coil maps (sum_c |S_c|^2 = 1), x = m exp(i phi) the object (magnitude
and synthesized phase) and v = sigma L w receiver noise (w white, L L^H the coils' noise covariance,
sigma the magnitude's own noise estimate x `noise_scale`):

    image_c = S_c x + v_c - S_c (S^H v)   (per pixel; S^H v = sum_c conj(S_c) v_c)
    kspace_c = fft2c(image_c),  reconstruction_rss = sqrt(sum_c |image_c|^2)

The magnitude already carries its noise, which every coil image inherits through S_c x. What an
array adds beyond it is noise in the directions the coil combination discards: removing the
component of v along S leaves the RSS image sqrt(m^2 + |v_perp|^2), which in tissue is m plus a
second-order bias, so the RSS keeps the input's noise level there; each coil image gets its own
noise, correlated across coils as L says, white in k-space (a pixelwise linear map of white noise);
in the background the RSS rises to the noncentral-chi level of a real RSS image.

The maps are smooth: they are computed exactly (`field.py`) on a coarse grid of nodes at most
`NODE_MM` apart, per slice at the slice's own position in the one array of the volume (so
neighbouring slices have consistent maps), normalized there, brought to full size by a cubic
spline (two small matrix products per slice) and normalized again per pixel (near a wire, which
can cross the field of view's background, a spline of normalized maps is not normalized); that
last division is folded into the per-pixel scalars below rather than applied to every map. Everything is built directly in the FFT frame of
`kspacify.kspace` (the spline's rows in frame order), so the coils' FFT is a plain in-place one.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.linalg import blas

from kspacify.coils.base import CoilArray
from kspacify.coils.noise import fill_standard_normal
from kspacify.kspace import fft2_frame, frame_order, from_frame_order, polar_frame

NODE_MM = 8.0


def noise_sigma(magnitude: np.ndarray) -> float:
    """The noise sigma of normalized magnitudes (B, H, W): the median of the per-slice estimates of
    `kspacify.phase.physics.noise_and_mask` (Rayleigh background peak, or Immerkaer's operator in
    tissue); 0 for a noise-free image."""
    from kspacify.phase.physics import PhysicsSettings, noise_and_mask

    sigma, _, _ = noise_and_mask(np.ascontiguousarray(magnitude, dtype=np.float32), PhysicsSettings())
    return float(np.median(sigma)) if len(sigma) else 0.0


def node_count(size: int, pixel_spacing: float) -> int:
    """Coarse nodes per axis: at most NODE_MM apart, at least 6, at most half the matrix."""
    wanted = int(np.ceil((size - 1) * pixel_spacing / NODE_MM)) + 1
    return int(np.clip(wanted, 6, max(6, size // 2)))


def spline_matrix(size: int, nodes: int) -> np.ndarray:
    """(size, nodes) float64: cubic-spline interpolation from `nodes` evenly spaced samples spanning
    pixel 0 .. size - 1 to every pixel."""
    positions = np.linspace(0.0, size - 1.0, nodes)
    return CubicSpline(positions, np.eye(nodes), axis=0)(np.arange(size, dtype=np.float64))


class VolumeCoils:
    """The coil step of one volume: `encode` turns slabs of (magnitude, phase) into coil k-space.

    `positions`: each slice's n (mm); `sigma`: receiver noise sigma per coil (normalized units);
    `model_settings`: the coil model's settings, for provenance.
    """

    def __init__(
        self, array: CoilArray, size: int, pixel_spacing: float, positions: np.ndarray, sigma: float,
        model_settings: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.array = array
        self.model_settings = dict(model_settings or {})
        self.size = size
        self.pixel_spacing = float(pixel_spacing)
        self.positions = np.asarray(positions, dtype=np.float64)
        self.sigma = float(sigma)
        self._z_nodes: tuple[np.ndarray, np.ndarray] | None = None
        nodes = node_count(size, pixel_spacing)
        self._node_mm = (np.linspace(0.0, size - 1.0, nodes) - (size - 1) / 2.0) * self.pixel_spacing
        spline = spline_matrix(size, nodes)
        self._spline_t = np.ascontiguousarray(spline.T.astype(np.float32))  # image order (columns)
        self._spline_frame = np.ascontiguousarray(spline[frame_order(size)].astype(np.float32))
        self._spline_frame_t = np.ascontiguousarray(self._spline_frame.T)
        # lower triangular: applied in place by BLAS trmm (half a matrix product's work, no second buffer)
        self._mix = np.asfortranarray(self.sigma * np.linalg.cholesky(array.noise_covariance), dtype=np.complex64)
        coils, pixels = array.coils, size * size
        self._maps = np.empty((coils, size, size), np.complex64)
        self._noise = np.empty((coils, pixels), np.complex64)
        self._work = np.empty((coils, pixels), np.complex64)

    @property
    def coils(self) -> int:
        return self.array.coils

    def slab_maps(self, start: int, stop: int) -> np.ndarray:
        """Coarse maps (B, C, n, n) of slices start .. stop: exact at each slice where slices are
        at least NODE_MM / 2 apart; else a cubic spline along the slice normal through maps at
        nodes at most NODE_MM / 2 apart spanning the volume (computed once), so thin slices cost a
        fraction of a field evaluation each and slabs agree at their borders."""
        positions = self.positions[start:stop]
        if len(self.positions) < 4 or np.min(np.abs(np.diff(self.positions))) >= NODE_MM / 2:
            return self.coarse_maps(positions)
        if self._z_nodes is None:
            low, high = self.positions.min(), self.positions.max()
            z = np.linspace(low, high, max(4, int(np.ceil(2 * (high - low) / NODE_MM)) + 1))
            self._z_nodes = (z, self.coarse_maps(z))
        z, maps = self._z_nodes
        weights = CubicSpline(z, np.eye(len(z)), axis=0)(positions)  # (B, nodes)
        return np.tensordot(weights, maps, axes=(1, 0))

    def coarse_maps(self, positions: np.ndarray) -> np.ndarray:
        """Normalized maps on the node grid, (B, C, nodes, nodes) complex128, image order."""
        nodes = len(self._node_mm)
        y, x = np.meshgrid(self._node_mm, self._node_mm, indexing="ij")
        points = np.empty((len(positions), nodes, nodes, 3))
        points[..., 0], points[..., 1] = x, y
        points[..., 2] = np.asarray(positions)[:, None, None]
        return np.moveaxis(self.array.sensitivities(points), 0, 1)

    def maps(self, positions: np.ndarray) -> np.ndarray:
        """Full-size normalized maps (B, C, H, W) complex64 in image order (for inspection, tests)."""
        spline = self._spline_t.T
        maps = spline @ self.coarse_maps(positions) @ spline.T
        maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=1, keepdims=True))
        return maps.astype(np.complex64)

    def _frame_maps(self, coarse: np.ndarray) -> np.ndarray:
        """One slice's coarse maps (C, n, n) -> full-size maps in the frame, into the maps buffer."""
        coils, nodes = coarse.shape[:2]
        half = np.empty((coils, nodes, self.size, 2), np.float32)
        half[..., 0] = coarse.real.astype(np.float32) @ self._spline_frame_t
        half[..., 1] = coarse.imag.astype(np.float32) @ self._spline_frame_t
        out = self._maps.view(np.float32)  # (C, H, 2W): real and imaginary interleaved
        np.matmul(self._spline_frame, half.reshape(coils, nodes, 2 * self.size), out=out)
        return self._maps

    def encode(
        self,
        start: int,
        magnitude: np.ndarray,
        phase: np.ndarray,
        rng: np.random.Generator,
        write: Callable[[int, np.ndarray, np.ndarray], Any],
    ) -> None:
        """Slices start .. start + len(magnitude): `write(index, kspace (1, C, H, W) complex64,
        rss (1, H, W) float32)` for each, in order (buffers are reused after `write` returns)."""
        coils, size = self.coils, self.size
        coarse = self.slab_maps(start, start + len(magnitude))
        noise_floats = self._noise.view(np.float32)
        for offset in range(len(magnitude)):
            maps = self._frame_maps(coarse[offset]).reshape(coils, -1)  # M = g S, g^2 = sum |M|^2
            map_floats = maps.view(np.float32)
            sums = np.einsum("cq,cq->q", map_floats, map_floats)
            inverse_g = 1.0 / np.sqrt(np.maximum(sums[0::2] + sums[1::2], np.finfo(np.float32).tiny))
            obj = polar_frame(magnitude[offset], phase[offset]).reshape(-1)
            work = self._work
            if self.sigma > 0:
                fill_standard_normal(rng, noise_floats)
                noise = self._mixed_noise()
                np.conjugate(maps, out=work)
                work *= noise
                # image = v + S (x - S^H v) = v + M (x / g - (M^H v) / g^2)
                beta = (obj - work.sum(axis=0) * inverse_g) * inverse_g
                np.multiply(maps, beta, out=work)
                work += noise
            else:
                np.multiply(maps, obj * inverse_g, out=work)
            floats = work.view(np.float32)
            squares = np.einsum("cq,cq->q", floats, floats)
            rss = np.sqrt(squares[0::2] + squares[1::2]).reshape(size, size)
            kspace = fft2_frame(work.reshape(coils, size, size))
            write(start + offset, kspace[None], from_frame_order(rss)[None].astype(np.float32, copy=False))

    def _mixed_noise(self) -> np.ndarray:
        """The noise buffer w (C, P) turned into v = sigma L w in place: as (P, C) in Fortran order
        (the same memory), v^T = w^T L^T is BLAS trmm from the right."""
        mixed = blas.ctrmm(1.0, self._mix, self._noise.T, side=1, lower=1, trans_a=1, overwrite_b=1)
        if not np.shares_memory(mixed, self._noise):  # a BLAS that copied: take its result
            self._noise[...] = mixed.T
        return self._noise

    def attrs(self) -> dict[str, Any]:
        """Provenance of this volume's array, for the file's attributes."""
        return {
            "coil_model": str(self.model_settings.get("model", "")),
            "coil_settings": self.model_settings,
            "coil_geometry": self.array.to_json(),
            "coil_noise_sigma": self.sigma,
        }
