"""Plain data that readers produce and everything downstream consumes.

A `VolumeInfo` is what scanning finds (headers only, no pixels); it is JSON-serializable so a
manifest can carry it between machines. A `Volume` is a `VolumeInfo` with its pixels loaded.
Nothing downstream of the readers knows whether a volume came from DICOM or NIfTI.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

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
class PhaseSlices:
    """Where a magnitude volume's acquired phase is: the phase images paired with it, one per
    magnitude slice, in its slice order and stored layout, and how their values become radians:
    radians = value * scale + offset (`value`: the rescaled pixel value); `scale` None: decided at
    load from the range the values span. `unit` names the rule (`sources.dicom.phase`), and
    `series_number` the phase images' series (both PHI-free)."""

    slices: tuple[SliceRef, ...]
    unit: str
    scale: float | None
    offset: float = 0.0
    series_number: int | None = None


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
    phase: PhaseSlices | None = None  # acquired phase images paired with the volume (DICOM), if any

    @property
    def files(self) -> tuple[str, ...]:
        """Source files in slice order, each once."""
        return tuple(dict.fromkeys(ref.path for ref in self.slices))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["acquisition"] = self.acquisition.to_json()
        if self.phase is None:
            del data["phase"]  # (manifests without acquired phase stay as they were)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VolumeInfo:
        """The volume a `to_json` dict describes; ValueError or TypeError naming the first field that
        is not what `to_json` writes (a manifest may have been edited: nothing in it is trusted)."""
        if not isinstance(data, dict):
            raise TypeError("a volume must be a JSON object")
        slices = data["slices"]
        if not isinstance(slices, (list, tuple)) or not slices:
            raise ValueError("slices: a non-empty list expected")
        return cls(
            source_kind=_text(data["source_kind"], "source_kind"),
            name=safe_name(data["name"]),
            key=_text(data["key"], "key"),
            patient=_text(data["patient"], "patient"),
            slices=tuple(_slice_ref(ref) for ref in slices),
            shape=_numbers(data["shape"], "shape", int),  # type: ignore[arg-type]
            spacing=_numbers(data["spacing"], "spacing", float),  # type: ignore[arg-type]
            meta=_mapping(data.get("meta", {}), "meta"),
            acquisition=Acquisition.from_json(data.get("acquisition")),
            phase=_phase_slices(data.get("phase")),
        )


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_NATIVE_DTYPES = {"<u1", "<i1", "<u2", "<i2", "<u4", "<i4", "|u1", "|i1"}


def safe_name(name: Any) -> str:
    """`name` if it is a plain output stem (letters, digits, `._-`, not starting with a dot or a
    dash, at most 200 characters), else ValueError: a name is joined to the output folder, so
    `../x` or `/etc/x` would write outside it."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"name {name!r} is not a plain file name")
    return name


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what}: a string expected, got {type(value).__name__}")
    return value


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what}: an object expected, got {type(value).__name__}")
    return dict(value)


def _numbers(value: Any, what: str, kind: type) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{what}: three numbers expected")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise ValueError(f"{what}: {item!r} is not a finite number")
        if kind is int and (item != int(item) or item < 1):
            raise ValueError(f"{what}: {item!r} is not a positive whole number")
        out.append(kind(item))
    return tuple(out)


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: {value!r} is not an index (a whole number >= 0)")
    return value


def _phase_slices(value: Any) -> PhaseSlices | None:
    if value is None:
        return None
    value = _mapping(value, "phase")
    slices = value.get("slices")
    if not isinstance(slices, (list, tuple)) or not slices:
        raise ValueError("phase slices: a non-empty list expected")
    numbers: dict[str, float | None] = {}
    for key in ("scale", "offset"):
        number = value.get(key, 0.0)
        if number is None and key == "scale":
            numbers[key] = None
            continue
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ValueError(f"phase {key} {number!r} is not a finite number")
        numbers[key] = float(number)
    series = value.get("series_number")
    if series is not None and (isinstance(series, bool) or not isinstance(series, int)):
        raise ValueError(f"phase series_number {series!r} is not a whole number")
    return PhaseSlices(tuple(_slice_ref(ref) for ref in slices), _text(value.get("unit"), "phase unit"),
                       numbers["scale"], numbers["offset"] or 0.0, series)  # fmt: skip


def _slice_ref(ref: Any) -> SliceRef:
    ref = _mapping(ref, "slice")
    frame = ref.get("frame")
    native = ref.get("native")
    if native:
        native = _mapping(native, "native")
        if native.get("dtype") not in _NATIVE_DTYPES:
            raise ValueError(f"native dtype {native.get('dtype')!r} is not one a DICOM image is stored in")
        bits = native.get("bits_stored")
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
            raise ValueError(f"native bits_stored {bits!r} is not 1 to 32")
        for key in ("slope", "intercept"):
            value = native.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"native {key} {value!r} is not a finite number")
        native = NativePixels(offset=_index(native.get("offset"), "native offset"), dtype=native["dtype"], bits_stored=bits,
                              slope=float(native.get("slope", 1.0)), intercept=float(native.get("intercept", 0.0)),
                              monochrome1=bool(native.get("monochrome1", False)))  # fmt: skip
    return SliceRef(_text(ref.get("path"), "slice path"), None if frame is None else _index(frame, "slice frame"),
                    native or None)  # fmt: skip


@dataclass(frozen=True)
class Volume:
    """A volume with its magnitude pixels: float32 (slices, rows, columns), rescaled, not normalized;
    and, where its acquired phase was loaded, that phase in radians [-pi, pi), the same shape."""

    info: VolumeInfo
    data: np.ndarray
    phase: np.ndarray | None = None


@dataclass(frozen=True)
class Skipped:
    """A file (or group of files) a reader did not turn into a volume, and why."""

    path: str
    reason: str
    failed: bool = False  # True: a fault (corrupt, unreadable); False: not for us (e.g. a DICOMDIR)


class SourceError(KspacifyError):
    """A reader could not load a volume it had scanned; the message names the cause."""


class PhaseError(SourceError):
    """A volume's acquired phase could not be loaded or interpreted (its magnitude may still be).
    `reason`: the same without any path (PHI-free: it may be written into an output's notes)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


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


@contextlib.contextmanager
def quiet(library: str) -> Iterator[None]:
    """Silence `library`'s log records and all warnings about odd-but-readable files within the
    block: what matters about a file is said once, by kspacify, as a note or a reason."""
    logger = logging.getLogger(library)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
