"""What every complex-data reader yields, and the per-volume normalization they share.

A `ComplexSlice` is one complex image slice (`image`, complex64, size x size) with the phase as
acquired. `magnitude` and `phase` are derived from `image`, so `image == magnitude * exp(1j * phase)`
holds by construction (to float32 rounding). The magnitude is normalized per volume, by the same rule
as the convert pipeline (`kspacify.preprocess`): the whole volume is divided by the 99.5th percentile
of its magnitude, so that percentile is 1 (its maximum where the percentile is 0, no scaling for an
all-zero volume); the complex image is divided by the same real factor, so the phase is untouched.

A `VolumeRef` is what directory scanning finds: a volume key, the file(s), the reader, the
subject where the files say, and the acquisition; no pixels, so splits can be computed without
loading data.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.kspace import fft2c
from kspacify.phase.base import wrap
from kspacify.preprocess import normalization_scale

log = logging.getLogger("kspacify.datasets")

NORMALIZATION_PERCENTILE = 99.5



@dataclass(frozen=True, eq=False)
class ComplexSlice:
    """One complex image slice with its real phase.

    `image`: complex64 (H, W), normalized per volume (see module doc). `volume_key`: the volume's
    identity for patient/volume-level splits (never two splits). `slice_index`: index of the slice in
    its volume. `source`: provenance (file, reader, original_shape, and reader-specific facts such as
    the normalization scale, the recon crop or the coil compression).
    """

    image: np.ndarray
    volume_key: str
    slice_index: int
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        image = np.asarray(self.image)
        if image.ndim != 2:
            raise ValueError(f"ComplexSlice.image must be 2D, got shape {image.shape}")
        if image.dtype != np.complex64:
            image = image.astype(np.complex64)
        object.__setattr__(self, "image", image)

    @property
    def magnitude(self) -> np.ndarray:
        """abs(image), float32."""
        return np.abs(self.image).astype(np.float32)

    @property
    def phase(self) -> np.ndarray:
        """angle(image) in radians, float32 in [-pi, pi)."""
        return wrap(np.angle(self.image))

    @property
    def kspace(self) -> np.ndarray:
        """fft2c(image), complex64: the project's FFT convention."""
        return fft2c(self.image).astype(np.complex64)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class VolumeRef:
    """A volume found by scanning (no pixels).

    `key`: volume key (relative path of the file under the scanned root, without extension and
    without a magnitude/phase tag; the file name stem when a single file is given). `patient`: the
    subject where the files say (fastMRI's `patient_id` attribute, a JSON sidecar's `subject`), else
    "" (`kspacify.datasets.splits.split_unit` decides what a split keeps together). `file`: the file
    read (the magnitude file for a magnitude/phase pair); `partner`: the second file of a pair (phase,
    or imaginary part), else None. `reader`: the reader's name. `shape`: the array shape as stored.
    `meta`: reader facts known from headers (e.g. number of coils, pair kind; `subject_unknown` when
    a sidecar says the subject is not known). `acquisition`: as the files say (else unknown).
    """

    key: str
    file: str
    reader: str
    shape: tuple[int, ...]
    patient: str = ""
    partner: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    acquisition: Acquisition = UNKNOWN

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))

    @property
    def files(self) -> tuple[str, ...]:
        return (self.file,) if self.partner is None else (self.file, self.partner)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["acquisition"] = self.acquisition.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VolumeRef:
        return cls(
            key=data["key"],
            file=data["file"],
            reader=data["reader"],
            shape=tuple(data["shape"]),
            patient=data.get("patient", ""),
            partner=data.get("partner"),
            meta=dict(data.get("meta", {})),
            acquisition=Acquisition.from_json(data.get("acquisition")),
        )


def fingerprint(ref: VolumeRef) -> str:
    """A content fingerprint of a volume's file(s): sha256 of each file's size and first MiB. Model
    cards list the fingerprints of the volumes a model saw, so the benchmark can recognize them under
    another root, name or copy (and leave them out of what it tests on)."""
    digest = hashlib.sha256()
    for path in ref.files:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            digest.update(str(handle.tell()).encode())
            handle.seek(0)
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def normalize_volume(images: np.ndarray, percentile: float = NORMALIZATION_PERCENTILE) -> tuple[np.ndarray, float]:
    """Complex volume (S, H, W) -> (volume / scale as complex64, scale); non-finite pixels become 0."""
    images = np.asarray(images)
    images = np.where(np.isfinite(images), images, 0)
    scale = normalization_scale(np.abs(images), percentile)
    return (images / scale).astype(np.complex64), scale


def make_slices(
    images: np.ndarray,
    key: str,
    source: dict[str, Any],
    slice_indices: list[int] | None = None,
    per_slice: list[dict[str, Any]] | None = None,
) -> list[ComplexSlice]:
    """Normalize a complex volume (S, H, W) and wrap each slice.

    `source` is copied into every slice's provenance, `per_slice[i]` (if given) only into slice i.
    """
    normalized, scale = normalize_volume(images)
    indices = list(range(len(normalized))) if slice_indices is None else slice_indices
    return [
        ComplexSlice(
            image=normalized[i],
            volume_key=key,
            slice_index=int(index),
            source={
                **source,
                **(per_slice[i] if per_slice is not None else {}),
                "normalization_scale": scale,
                "normalization_percentile": NORMALIZATION_PERCENTILE,
            },
        )
        for i, index in enumerate(indices)
    ]


@dataclass(frozen=True)
class Skipped:
    """A file scanning did not turn into a volume, and why (`failed`: a fault, not just not-for-us)."""

    path: str
    reason: str
    failed: bool = False
