"""Complex MRI data with real phase, read into one form: `ComplexSlice`.

    from kspacify.datasets import iter_slices, list_volumes, make_splits

    for s in iter_slices("data/", size=256):   # walks the directory, skips what it cannot use
        s.image, s.magnitude, s.phase, s.volume_key, s.slice_index, s.source

Readers (one module each): fastMRI HDF5 k-space, single- and multi-coil (`fastmri`, multi-coil
compressed to one PCA virtual coil); complex NIfTI and magnitude/phase or real/imaginary NIfTI pairs
(`nifti`); complex .npy (`npy`). Every slice is complex64 size x size (centre-crop to square, then
Fourier resampling, `resize`), normalized per volume so the magnitude's 99.5th percentile is 1
(`base`). `load_pairs` holds slices in memory as a `PairSet` (`pairs`), the form every trainer
reads through its own transform. One split policy (`splits.volume_splits`: by subject), JSON on disk.
"""

from kspacify.datasets.base import (
    NORMALIZATION_PERCENTILE,
    ComplexSlice,
    Skipped,
    VolumeRef,
    fingerprint,
    normalization_scale,
    normalize_volume,
)
from kspacify.datasets.discover import iter_slices, list_volumes, read_volume, scan
from kspacify.datasets.pairs import PairDataset, PairSet, load_pairs
from kspacify.datasets.resize import (
    center_crop,
    crop_to_square,
    fourier_resize,
    to_square_size,
)
from kspacify.datasets.splits import (
    GEN_NAMES,
    REC_FRACTIONS,
    gen_splits,
    load_splits,
    load_splits_with_meta,
    make_nested_splits,
    make_splits,
    rec_splits,
    save_splits,
    split_unit,
    split_volumes,
    validate_splits,
    volume_splits,
)
from kspacify.errors import DataError

__all__ = [
    "GEN_NAMES",
    "NORMALIZATION_PERCENTILE",
    "REC_FRACTIONS",
    "ComplexSlice",
    "PairDataset",
    "PairSet",
    "DataError",
    "Skipped",
    "VolumeRef",
    "center_crop",
    "crop_to_square",
    "fingerprint",
    "fourier_resize",
    "gen_splits",
    "iter_slices",
    "list_volumes",
    "load_pairs",
    "load_splits",
    "load_splits_with_meta",
    "make_nested_splits",
    "make_splits",
    "normalization_scale",
    "normalize_volume",
    "read_volume",
    "rec_splits",
    "save_splits",
    "scan",
    "split_unit",
    "split_volumes",
    "to_square_size",
    "validate_splits",
    "volume_splits",
]
