"""The one FFT convention of the project: fastMRI's centred, orthonormal 2D FFT.

Both functions act on the last two axes and accept numpy arrays or torch tensors (complex dtype),
returning the same kind. torch is only imported when something other than a numpy array is passed in.

For numpy arrays with even sizes the shifts are done without copies: for even N,
fftshift(fft(ifftshift(x)))[k] = (-1)^(N/2) (-1)^k fft((-1)^n x[n])[k], so both shifts become one
multiplication by a +-1 checkerboard before and after the transform (3x faster than shifting here).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, overload

import numpy as np
import scipy.fft

if TYPE_CHECKING:
    import torch


@overload
def fft2c(image: np.ndarray) -> np.ndarray: ...
@overload
def fft2c(image: torch.Tensor) -> torch.Tensor: ...
def fft2c(image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Centred orthonormal FFT: image domain -> k-space (as fastMRI.fft2c)."""
    return _shifted(image, "fft2")


@overload
def ifft2c(kspace: np.ndarray) -> np.ndarray: ...
@overload
def ifft2c(kspace: torch.Tensor) -> torch.Tensor: ...
def ifft2c(kspace: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Centred orthonormal inverse FFT: k-space -> image domain (as fastMRI.ifft2c)."""
    return _shifted(kspace, "ifft2")


def _shifted(x: np.ndarray | torch.Tensor, transform: str) -> np.ndarray | torch.Tensor:
    """fftshift(transform(ifftshift(x))) on the last two axes, orthonormal; `transform` names the
    function of scipy.fft (numpy arrays) or torch.fft (tensors)."""
    if isinstance(x, np.ndarray):
        return _centred(x, getattr(scipy.fft, transform))
    import torch

    y = getattr(torch.fft, transform)(torch.fft.ifftshift(x, dim=(-2, -1)), dim=(-2, -1), norm="ortho")
    return torch.fft.fftshift(y, dim=(-2, -1))


@functools.lru_cache(maxsize=16)
def _board(height: int, width: int, sign: int = 1, dtype: type = np.float32) -> np.ndarray:
    """The +-1 checkerboard (read-only) that does fastMRI's shifts for even sizes."""
    board: np.ndarray = (sign * np.outer(1 - 2 * (np.arange(height) % 2), 1 - 2 * (np.arange(width) % 2))).astype(dtype)
    board.setflags(write=False)
    return board


def _output_sign(height: int, width: int) -> int:
    return 1 if (height // 2 + width // 2) % 2 == 0 else -1


def _flip_signs(x: np.ndarray, sign: int = 1) -> np.ndarray:
    """x *= the checkerboard (times `sign`), in place. A complex64 x takes a complex64 board: the
    product numpy forms with a float board, zeros' signs included, without casting the board anew
    each call (9x faster)."""
    height, width = x.shape[-2:]
    x *= _board(height, width, sign, np.complex64 if x.dtype == np.complex64 else np.float32)
    return x


def _centred(x: np.ndarray, transform: Callable[..., np.ndarray]) -> np.ndarray:
    """transform (scipy fft2/ifft2) of x with fastMRI's shifts, on the last two axes."""
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        shifted = np.fft.ifftshift(x, axes=(-2, -1))
        return np.fft.fftshift(transform(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))
    return _transform_signed(x * _board(height, width), transform)


def _transform_signed(signed: np.ndarray, transform: Callable[..., np.ndarray]) -> np.ndarray:
    """The even-size rest of `_centred` once the input checkerboard is applied (`signed` is overwritten)."""
    height, width = signed.shape[-2:]
    return _flip_signs(transform(signed, axes=(-2, -1), norm="ortho", overwrite_x=True), _output_sign(height, width))


def to_kspace(magnitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Complex k-space (complex64) of the image magnitude * exp(i * phase)."""
    return fft2_signed(polar_signed(magnitude, phase))


def polar_signed(magnitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """The element-wise half of `to_kspace`: magnitude * exp(i * phase), complex64, for even sizes
    times fft2c's input checkerboard. Convert does it while the previous slab's `fft2_signed` runs
    on another thread."""
    image = np.empty(magnitude.shape, dtype=np.complex64)
    image.real = magnitude * np.cos(phase)
    image.imag = magnitude * np.sin(phase)
    height, width = magnitude.shape[-2:]
    return image if height % 2 or width % 2 else _flip_signs(image)


def fft2_signed(image: np.ndarray) -> np.ndarray:
    """The rest of `to_kspace`: k-space of what `polar_signed` gave (overwritten)."""
    height, width = image.shape[-2:]
    if height % 2 or width % 2:
        return _centred(image, scipy.fft.fft2)
    return _transform_signed(image, scipy.fft.fft2)


# The same transform for many images that are built pixel by pixel anyway (the coil images of
# `kspacify.coils`): fastMRI's shifts folded into how the image is laid out, so that a plain
# orthonormal FFT of that layout, the "frame", is fft2c of the image. With s = N // 2 on each axis,
# fftshift(F(z))[k] = F(z * exp(2 pi i s n / N))[k] (a shift in k is a modulation in n), so
#     fft2c(x) = F(ifftshift(x) * ramp),  ramp[n1, n2] = exp(2 pi i (s1 n1 / N1 + s2 n2 / N2)),
# which for even sizes is the +-1 checkerboard. A pixelwise product with smooth maps can be formed
# directly in the frame (the maps' rows and columns taken in `frame_order`), and |frame| is the
# image's magnitude in ifftshift order (`from_frame_order` undoes it).


def frame_order(n: int) -> np.ndarray:
    """Indices i such that x[i] == numpy.fft.ifftshift(x) along an axis of length n."""
    return np.fft.ifftshift(np.arange(n))


@functools.lru_cache(maxsize=8)
def frame_ramp(height: int, width: int) -> np.ndarray:
    """The unit-modulus factor of the frame, complex64 (height, width), read-only: +-1 for even sizes."""

    def axis(n: int) -> np.ndarray:
        if n % 2 == 0:
            return (1 - 2 * (np.arange(n) % 2)).astype(np.complex128)
        return np.exp(2j * np.pi * (n // 2) * np.arange(n) / n)

    ramp = np.outer(axis(height), axis(width)).astype(np.complex64)
    ramp.setflags(write=False)
    return ramp


def to_frame(image: np.ndarray) -> np.ndarray:
    """The frame of complex images (..., H, W): ifftshift(image) * frame_ramp, complex64."""
    height, width = image.shape[-2:]
    shifted = np.fft.ifftshift(image, axes=(-2, -1)).astype(np.complex64, copy=False)
    return shifted * frame_ramp(height, width)


def polar_frame(magnitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """The frame of magnitude * exp(i * phase) (float32 arrays (..., H, W)), complex64."""
    image = np.empty(magnitude.shape, dtype=np.complex64)
    image.real = magnitude * np.cos(phase)
    image.imag = magnitude * np.sin(phase)
    return to_frame(image)


def fft2_frame(frame: np.ndarray) -> np.ndarray:
    """fft2c of the images whose frame is given (complex64, last two axes); may overwrite `frame`."""
    return scipy.fft.fft2(frame, axes=(-2, -1), norm="ortho", overwrite_x=True)


def from_frame_order(values: np.ndarray) -> np.ndarray:
    """A real per-pixel quantity of the frame (e.g. |frame|) back in image order (fftshift)."""
    return np.fft.fftshift(values, axes=(-2, -1))
