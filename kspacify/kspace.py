"""The one FFT convention of the project: fastMRI's centred, orthonormal 2D FFT.

Both functions act on the last two axes and accept numpy arrays or torch tensors (complex dtype),
returning the same kind. torch is only touched when a tensor is passed in.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

ArrayT = TypeVar("ArrayT")


def _is_torch(x: object) -> bool:
    return type(x).__module__.startswith("torch")


def fft2c(image: ArrayT) -> ArrayT:
    """Centred orthonormal FFT: image domain -> k-space (as fastMRI.fft2c)."""
    if _is_torch(image):
        import torch

        x = torch.fft.ifftshift(image, dim=(-2, -1))
        x = torch.fft.fft2(x, dim=(-2, -1), norm="ortho")
        return torch.fft.fftshift(x, dim=(-2, -1))  # type: ignore[return-value]
    x = np.fft.ifftshift(image, axes=(-2, -1))
    x = np.fft.fft2(x, axes=(-2, -1), norm="ortho")
    return np.fft.fftshift(x, axes=(-2, -1))  # type: ignore[return-value]


def ifft2c(kspace: ArrayT) -> ArrayT:
    """Centred orthonormal inverse FFT: k-space -> image domain (as fastMRI.ifft2c)."""
    if _is_torch(kspace):
        import torch

        x = torch.fft.ifftshift(kspace, dim=(-2, -1))
        x = torch.fft.ifft2(x, dim=(-2, -1), norm="ortho")
        return torch.fft.fftshift(x, dim=(-2, -1))  # type: ignore[return-value]
    x = np.fft.ifftshift(kspace, axes=(-2, -1))
    x = np.fft.ifft2(x, axes=(-2, -1), norm="ortho")
    return np.fft.fftshift(x, axes=(-2, -1))  # type: ignore[return-value]


def to_kspace(magnitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Complex k-space (complex64) of the image magnitude * exp(i * phase)."""
    image = magnitude.astype(np.float32) * np.exp(1j * phase.astype(np.float32))
    return fft2c(image.astype(np.complex64)).astype(np.complex64)
