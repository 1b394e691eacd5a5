"""Complex MRI data with real phase, read into one form: `ComplexSlice`.

    from kspacify.datasets import iter_slices, list_volumes, make_splits

    for s in iter_slices("data/", size=256):   # walks the directory, skips what it cannot use
        s.image, s.magnitude, s.phase, s.volume_key, s.slice_index, s.source

Readers (one module each): fastMRI HDF5 k-space, single- and multi-coil (`fastmri`, multi-coil
compressed to one PCA virtual coil); complex NIfTI and magnitude/phase or real/imaginary NIfTI pairs
(`nifti`); complex .npy (`npy`). Every slice is complex64 size x size (centre-crop to square, then
Fourier resampling, `resize`), normalized per volume so the magnitude's 99.5th percentile is 1
(`base`). Splits by volume/patient key, deterministic from a seed, JSON on disk (`splits`).
"""

from kspacify.datasets.base import (
    NORMALIZATION_PERCENTILE,
    ComplexSlice,
    DatasetError,
    Skipped,
    VolumeRef,
    normalization_scale,
    normalize_volume,
    wrap_phase,
)
from kspacify.datasets.discover import iter_slices, list_volumes, read_volume, scan
from kspacify.datasets.resize import center_crop, crop_to_square, fourier_resize, to_square_size
from kspacify.datasets.splits import (
    load_splits,
    load_splits_with_meta,
    make_nested_splits,
    make_splits,
    make_volume_splits,
    save_splits,
    validate_splits,
)

__all__ = [
    "NORMALIZATION_PERCENTILE",
    "ComplexSlice",
    "DatasetError",
    "Skipped",
    "VolumeRef",
    "center_crop",
    "crop_to_square",
    "fourier_resize",
    "iter_slices",
    "list_volumes",
    "load_splits",
    "load_splits_with_meta",
    "make_nested_splits",
    "make_splits",
    "make_volume_splits",
    "normalization_scale",
    "normalize_volume",
    "read_volume",
    "save_splits",
    "scan",
    "to_square_size",
    "validate_splits",
    "wrap_phase",
]
