"""Complex `.npy` arrays in the image domain.

Axis convention (numpy / fastMRI order, unlike NIfTI): a 2D array is one slice (H, W); a 3D array is
(slices, H, W). Only complex dtypes are read; real arrays are skipped (magnitude only). The file is
one volume (normalized as a whole); slices are centre-cropped to square and Fourier-resampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from kspacify.datasets.base import ComplexSlice, VolumeRef, make_slices
from kspacify.datasets.resize import to_square_size
from kspacify.errors import DataError

READER = "npy"
SUFFIXES = (".npy",)


def scan(path: Path, key: str) -> VolumeRef | str:
    """A VolumeRef for a complex 2D/3D .npy file, or why it is skipped (header only, no pixels)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        return f"unreadable .npy ({error})"
    if not np.issubdtype(array.dtype, np.complexfloating):
        return f"real-valued .npy (dtype {array.dtype}): no phase"
    if array.ndim not in (2, 3):
        return f".npy of shape {array.shape}: expected (H, W) or (slices, H, W)"
    return VolumeRef(key=key, file=str(path), reader=READER, shape=tuple(array.shape))


def read(ref: VolumeRef, size: int = 256) -> Iterator[ComplexSlice]:
    try:
        array = np.load(ref.file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{ref.file}: unreadable .npy ({error})") from error
    if array.ndim == 2:
        array = array[None]
    images = np.stack([to_square_size(image, size) for image in array])
    source = {
        "file": ref.file,
        "reader": READER,
        "original_shape": list(ref.shape),
        "resize": "centre-crop-square+fourier",
    }
    yield from make_slices(images, ref.key, source)
