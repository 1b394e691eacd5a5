"""Plain data that readers produce and everything downstream consumes.

A `VolumeInfo` is what scanning finds (headers only, no pixels); it is JSON-serializable so a
manifest can carry it between machines. A `Volume` is a `VolumeInfo` with its pixels loaded.
Nothing downstream of the readers knows whether a volume came from DICOM or NIfTI.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.errors import KspacifyError


@dataclass(frozen=True)
class NativePixels:
    """Where an uncompressed little-endian DICOM image's values sit in its file and how to turn them
    into numbers, found while scanning, so loading can read them without parsing the file again."""

    offset: int
    dtype: str  # numpy dtype of the stored values, e.g. "<u2"
    bits_stored: int
    slope: float = 1.0
    intercept: float = 0.0
    monochrome1: bool = False


@dataclass(frozen=True)
class SliceRef:
    """Where one slice's pixels live: a file, and the frame (DICOM) or slice index (NIfTI) in it."""

    path: str
    frame: int | None = None
    native: NativePixels | None = None


@dataclass(frozen=True)
class VolumeInfo:
    """A volume found by a reader, ordered along the slice normal; no pixel data.

    `name` is a PHI-free output stem; `key` is a stable identity used to derive the volume's
    random stream (so output does not depend on order or on the number of workers) and is never
    written to outputs; `patient` is a salted pseudonym of the patient ID.
    """

    source_kind: str  # "dicom" | "nifti"
    name: str
    key: str
    patient: str
    slices: tuple[SliceRef, ...]
    shape: tuple[int, int, int]  # slices, rows, columns
    spacing: tuple[float, float, float]  # mm: slice step, row spacing, column spacing
    meta: dict[str, Any] = field(default_factory=dict)  # PHI-free acquisition facts
    acquisition: Acquisition = UNKNOWN  # what the phase depends on (sequence family, B0, TE, field direction)

    @property
    def files(self) -> tuple[str, ...]:
        """Source files in slice order, each once."""
        return tuple(dict.fromkeys(ref.path for ref in self.slices))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["acquisition"] = self.acquisition.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VolumeInfo:
        return cls(
            source_kind=data["source_kind"],
            name=data["name"],
            key=data["key"],
            patient=data["patient"],
            slices=tuple(
                SliceRef(ref["path"], ref.get("frame"), NativePixels(**ref["native"]) if ref.get("native") else None)
                for ref in data["slices"]
            ),
            shape=tuple(data["shape"]),  # type: ignore[arg-type]
            spacing=tuple(data["spacing"]),  # type: ignore[arg-type]
            meta=dict(data.get("meta", {})),
            acquisition=Acquisition.from_json(data.get("acquisition")),
        )


@dataclass(frozen=True)
class Volume:
    """A volume with its magnitude pixels: float32 (slices, rows, columns), rescaled, not normalized."""

    info: VolumeInfo
    data: np.ndarray


@dataclass(frozen=True)
class Skipped:
    """A file (or group of files) a reader did not turn into a volume, and why."""

    path: str
    reason: str
    failed: bool = False  # True: a fault (corrupt, unreadable); False: not for us (e.g. a DICOMDIR)


class SourceError(KspacifyError):
    """A reader could not load a volume it had scanned; the message names the cause."""


@dataclass(frozen=True)
class Pseudonymizer:
    """Salted keyed hash (HMAC-SHA256) for identifiers that must never appear in clear."""

    salt: bytes

    def __call__(self, identifier: str, length: int = 16) -> str:
        digest = hmac.new(self.salt, identifier.encode("utf-8"), hashlib.sha256).hexdigest()
        return digest[:length]


def stable_key(*parts: object) -> str:
    """Unsalted identity hash used only to seed per-volume random streams (never written out)."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()
