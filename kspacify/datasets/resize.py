"""Complex-image cropping and resizing, done on the complex values (never on the wrapped phase).

Centring follows the FFT convention of `kspacify.kspace` (fftshift puts the centre of an n-pixel
axis at index n // 2): a crop from n to m keeps indices n//2 - m//2 ... n//2 - m//2 + m - 1, so the
centre pixel stays the centre pixel, and the same rule places a smaller array inside a larger one.
For even n and m this is the usual (n - m) // 2 offset (fastMRI's `center_crop`).

`to_square_size` is the rule every reader applies: centre-crop the longer axis so the image is
square (the shorter field of view is kept whole, the longer one loses its edges, no padding), then
`fourier_resize` to size x size.

`fourier_resize` resamples by cropping (shrinking) or zero-padding (enlarging) the centred k-space
(fft2c) and transforming back, scaled by m / n so intensities are kept. Shrinking is an ideal
low-pass: anti-aliased, and exact for images band-limited to the new grid. Enlarging is MRI's
zero-filled (sinc) interpolation, which adds no new frequencies; like any band-limited interpolation
it rings next to edges the original grid did not resolve (e.g. a crop through tissue).
"""

from __future__ import annotations

import numpy as np

from kspacify.kspace import fft2c, ifft2c


def _window(n: int, m: int) -> tuple[slice, slice]:
    """(source, destination) slices that centre an m-long axis in an n-long one or vice versa."""
    if m <= n:
        start = n // 2 - m // 2
        return slice(start, start + m), slice(0, m)
    start = m // 2 - n // 2
    return slice(0, n), slice(start, start + n)


def center_crop(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop the last two axes to `shape` (each at most the current size) around the centre."""
    height, width = image.shape[-2:]
    rows, cols = min(shape[0], height), min(shape[1], width)
    return image[..., _window(height, rows)[0], _window(width, cols)[0]]


def crop_to_square(image: np.ndarray) -> np.ndarray:
    """Centre-crop the longer of the last two axes to the length of the shorter one."""
    side = min(image.shape[-2:])
    return center_crop(image, (side, side))


def fourier_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample the last two axes of a complex image to `shape` by k-space crop / zero-pad (complex64)."""
    height, width = image.shape[-2:]
    rows, cols = shape
    if (rows, cols) == (height, width):
        return np.asarray(image, dtype=np.complex64)
    kspace = fft2c(np.asarray(image, dtype=np.complex128))
    out = np.zeros(kspace.shape[:-2] + (rows, cols), dtype=np.complex128)
    src_r, dst_r = _window(height, rows)
    src_c, dst_c = _window(width, cols)
    out[..., dst_r, dst_c] = kspace[..., src_r, src_c]
    # orthonormal FFTs: the DC coefficient of a constant c is c*sqrt(N); keep c
    gain = np.sqrt((rows * cols) / (height * width))
    return (ifft2c(out) * gain).astype(np.complex64)


def to_square_size(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to square, then Fourier-resample to size x size (last two axes), complex64."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    return fourier_resize(crop_to_square(image), (size, size))
