"""DICOM reader: find MR magnitude volumes in a pile of files, then load their pixels.

Scanning reads headers only (no pixel data) and keeps a small record per image (or per frame of an
Enhanced MR file), so it scales to archives of 10^5 files. Images are grouped into volumes by series
and then by everything that must not differ inside one stack (orientation, matrix, pixel spacing,
echo, temporal position, image type, diffusion weighting, ...), so a localizer or a second echo never
lands in a stack. Slices are ordered by their position along the canonical slice normal (see
`orientation.py`); duplicated positions are split into separate volumes (repeated acquisitions) or
reported, never mixed. A Siemens mosaic file is one volume whose slices are tiles of its image.

Every volume name, key and meta value is PHI-free: no names, IDs, UIDs, dates, institutions or
free-text descriptions leave this module (descriptions are read only to recognise localizers).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import struct
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.hooks import hooks as pydicom_hooks
from pydicom.hooks import raw_element_value, raw_element_vr
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import AMBIGUOUS_VR
from pydicom.values import convert_value

from .base import NativePixels, Pseudonymizer, Skipped, SliceRef, SourceError, VolumeInfo, stable_key
from .orientation import IDENTITY, InPlane, canonical_inplane

__all__ = ["looks_like_dicom", "scan_dicom", "load_dicom", "CODECS_FIX"]

CODECS_FIX = "install the codecs extra: pip install 'kspacify[codecs]'"

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.4"
_KEEP_SOP = {
    MR_IMAGE: "MR Image Storage",
    ENHANCED_MR: "Enhanced MR Image Storage",
    LEGACY_ENHANCED_MR: "Legacy Converted Enhanced MR Image Storage",
}
# (UID or UID family, what to call it); a family matches the UID itself and anything under "UID."
_SKIP_SOP = (
    ("1.2.840.10008.1.3.10", "DICOMDIR (media directory, not an image)"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "key object selection document"),
    ("1.2.840.10008.5.1.4.1.1.88", "structured report"),
    ("1.2.840.10008.5.1.4.1.1.11", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data"),
    ("1.2.840.10008.5.1.4.1.1.4.2", "MR spectroscopy"),
)

# Header elements scan needs; everything else is skipped without being decoded. As tags: dcmread
# would look names up on every call.
_SCAN_TAGS = [Tag(t) for t in (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "Modality", "Manufacturer",
    "SeriesDescription", "ProtocolName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
    "SeriesNumber", "AcquisitionNumber", "InstanceNumber", "ImagePositionPatient",
    "ImageOrientationPatient", "TemporalPositionIdentifier", "SliceThickness", "SpacingBetweenSlices",
    "RepetitionTime", "EchoTime", "InversionTime", "EchoNumbers", "MagneticFieldStrength", "FlipAngle",
    "TriggerTime", "MRAcquisitionType", "DiffusionBValue", "DiffusionGradientOrientation",
    "ComplexImageComponent", "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "Rows",
    "Columns", "PixelSpacing", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope",
    "RescaleIntercept", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    0x00430010, 0x0043102F,  # GE private creator and image type (0 magnitude, 1 phase, 2 real, 3 imaginary)
    0x00190010, 0x0019100A,  # Siemens private creator and NumberOfImagesInMosaic
    0x00290010, 0x00291010,  # Siemens private creator and CSA image header (mosaic tile count, slice normal)
)]
_KEYWORDS = {tag: keyword_for_tag(tag) or int(tag) for tag in _SCAN_TAGS}  # _Header keys; private: the tag
# Public tags whose raw elements `_Header` may decode itself, with their dictionary VR: not for a
# sequence or an ambiguous VR (`ds[tag]` post-processes those), nor Specific Character Set (which
# is decoded with another charset)
_PLAIN_VR = {tag: dictionary_VR(tag) for tag in _SCAN_TAGS if not tag.is_private and tag != 0x00080005
             and dictionary_VR(tag) != "SQ" and dictionary_VR(tag) not in AMBIGUOUS_VR}
_GE_COMPONENT = {1: "phase", 2: "real", 3: "imaginary"}

_PIXEL_MODULE = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation", "SamplesPerPixel")
_COMPONENT_TOKENS = {"P": "phase", "PHASE": "phase", "PHASE MAP": "phase", "R": "real", "REAL": "real",
                     "I": "imaginary", "IMAGINARY": "imaginary"}
_COMPONENT_PREFIX = {"P_": "phase", "R_": "real", "I_": "imaginary"}  # Philips, e.g. P_FFE, R_SE
_COMPLEX_COMPONENT = {"PHASE": "phase", "REAL": "real", "IMAGINARY": "imaginary", "MIXED": "mixed"}
_COMPONENT_SUFFIX = {"phase": "_ph", "real": "_re", "imaginary": "_im", "mixed": "_mx"}
_LOCALIZER_WORDS = {"localizer", "localiser", "scout", "survey", "tripilot", "3plane", "aascout"}

_POS_TOL = 0.01  # mm; projected positions closer than this are "the same slice position"
_IOP_TOL = 1e-3  # direction-cosine tolerance for "same orientation"


# --------------------------------------------------------------------------------------- helpers


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings and log records about odd-but-readable files, and skip its value
    validation while reading (it only warns, and costs ~15% of a header read)."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    validation = pydicom.config.settings.reading_validation_mode
    logger.setLevel(logging.CRITICAL + 1)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        pydicom.config.settings.reading_validation_mode = validation


def _get(ds: Any, keyword: str) -> Any:
    """Element value or None; a malformed value reads as None instead of raising."""
    if ds is None:
        return None
    try:
        return ds.get(keyword)
    except Exception:
        return None


class _Header(dict):
    """The top-level element values a scan read (`_SCAN_TAGS`), by keyword (private ones by tag),
    each decoded once, with the dataset as `.ds` and its `.file_meta`. A value that fails to decode
    is left out, so it reads as None, as with `_get`. (Going through `ds.get(keyword)` for every
    use was most of the header pass.)"""

    def __init__(self, ds: Any):
        super().__init__()
        self.ds = ds
        self.file_meta = getattr(ds, "file_meta", None)
        charset = ds.original_character_set if _default_decoding() else None
        for tag in ds.keys():
            try:
                self[_KEYWORDS.get(tag, tag)] = _element_value(ds, tag, charset)
            except Exception:
                continue


def _default_decoding() -> bool:
    """pydicom turns raw elements into values with its stock hooks (no callbacks configured)."""
    return (pydicom_hooks.raw_element_vr is raw_element_vr and pydicom_hooks.raw_element_value is raw_element_value
            and not pydicom_hooks.raw_element_kwargs and not pydicom.config.data_element_callback)


def _element_value(ds: Any, tag: Any, charset: Any) -> Any:
    """`ds[tag].value`. A plain element (`_PLAIN_VR`) of a dataset read from a file (`charset`: its
    character set, given only when pydicom decodes as stock) is decoded with the one call `ds[tag]`
    would end in, skipping the dataset's bookkeeping, which cost more than the decoding."""
    raw = ds.get_item(tag)
    vr = _PLAIN_VR.get(tag)
    if charset and vr and isinstance(raw, RawDataElement) and raw.VR in (None, vr):
        try:
            return convert_value(vr, raw, charset)
        except Exception:
            pass  # the full path decides: a VR 'UN' fallback, or the same error
    return ds[tag].value


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _float(value: Any) -> float | None:
    vals = _values(value)
    if not vals:
        return None
    try:
        out = float(vals[0])
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(round(f)) if f is not None else None


def _vector(value: Any, n: int) -> tuple[float, ...] | None:
    vals = _values(value)
    if len(vals) != n:
        return None
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v).strip().upper() for v in _values(value) if str(v).strip())


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _sop_skip_reason(uid: str) -> str:
    for family, what in _SKIP_SOP:
        if uid == family or uid.startswith(family + "."):
            return what
    name = UID(uid).name if uid else ""
    if name and name != uid:
        return f"not an MR image ({name})"
    return f"unsupported SOP class {uid}" if uid else "no SOP class (not an image)"


def _component(image_type: tuple[str, ...], complex_component: str | None) -> str | None:
    """'phase' / 'real' / 'imaginary' / 'mixed' for non-magnitude images, None for magnitude."""
    if complex_component:
        cc = complex_component.strip().upper()
        if cc in _COMPLEX_COMPONENT:
            return _COMPLEX_COMPONENT[cc]
    for token in image_type[2:]:
        if token in _COMPONENT_TOKENS:
            return _COMPONENT_TOKENS[token]
        for prefix, what in _COMPONENT_PREFIX.items():
            if token.startswith(prefix):
                return what
    return None


def _private(header: _Header, creator_tag: int, tag: int, creator: str) -> Any:
    """A private element's value, or None unless its block is reserved by `creator` (vendors
    reserve blocks per file, so the tag alone does not say what the value is)."""
    owner = header.get(creator_tag)
    return header.get(tag) if owner is not None and creator in str(owner).upper() else None


def _private_int(header: _Header, creator_tag: int, tag: int, creator: str, fmt: str) -> int | None:
    """A private integer; without a dictionary VR pydicom gives raw bytes (struct `fmt`, file byte order)."""
    try:
        value = _private(header, creator_tag, tag, creator)
        if isinstance(value, bytes):
            implicit, little = header.ds.original_encoding
            size = struct.calcsize(fmt)
            if len(value) < size:
                return None
            value = struct.unpack(("<" if little is not False else ">") + fmt, value[:size])[0]
        return _int(value)
    except Exception:
        return None


def _ge_component(header: _Header) -> str | None:
    """GE stores magnitude/phase/real/imaginary in private (0043,102F) under creator GEMS_PARM_01."""
    return _GE_COMPONENT.get(_private_int(header, 0x00430010, 0x0043102F, "GEMS_PARM_01", "h"))


def _is_localizer(image_type: tuple[str, ...], descriptions: Iterable[Any]) -> bool:
    if "LOCALIZER" in image_type or "SCOUT" in image_type:
        return True
    for text in descriptions:
        if text is None:
            continue
        words = set(re.split(r"[^a-z0-9]+", str(text).lower()))
        joined = re.sub(r"[^a-z0-9]+", "", str(text).lower())
        if words & _LOCALIZER_WORDS or joined in _LOCALIZER_WORDS:
            return True
    return False


def _fg_item(ds: Any, per_frame: Any, shared: Any, frame: int, keyword: str) -> Any:
    """First item of functional-group macro `keyword` for `frame` (per-frame first, then shared)."""
    for holder in (per_frame[frame] if per_frame is not None and frame < len(per_frame) else None, shared):
        seq = _get(holder, keyword)
        if seq:
            try:
                return seq[0]
            except Exception:
                continue
    return None


@lru_cache(maxsize=1024)
def _degenerate(iop: tuple[float, ...]) -> bool:
    """Row and column cosines (nearly) parallel; cached, as all slices of a stack share them."""
    return bool(np.linalg.norm(np.cross(iop[:3], iop[3:])) < 1e-3)


def _shared(ds: Any) -> Any:
    seq = _get(ds, "SharedFunctionalGroupsSequence")
    try:
        return seq[0] if seq else None
    except Exception:
        return None


# ------------------------------------------------------------------------------- Siemens mosaic


def _csa_values(blob: Any, names: set[str]) -> dict[str, list[str]]:
    """Values (as text) of the named elements of a Siemens CSA2 header ('SV10'; CSA1 from old
    software is not read, as dcm2niix does not read it either), {} if it is not one or is damaged.

    Layout: 'SV10', 4 unused bytes, uint32 element count, 4 unused bytes; per element a 64-byte
    name, int32 VM, 4-byte VR, int32 SyngoDT, int32 item count, 4 unused bytes; per item four int32
    (the second is the value's length), then the value, padded to 4 bytes.
    """
    if not isinstance(blob, bytes) or blob[:4] != b"SV10":
        return {}
    out: dict[str, list[str]] = {}
    try:
        (count,) = struct.unpack_from("<I", blob, 8)
        pos = 16
        for _ in range(count):  # each element needs bytes, so a bogus count runs out of data
            name, n_items = struct.unpack_from("<64s12xi4x", blob, pos)
            pos += 84
            items = []
            for _ in range(n_items):
                length = struct.unpack_from("<4i", blob, pos)[1]
                pos += 16
                if length < 0 or pos + length > len(blob):
                    return {}
                items.append(blob[pos:pos + length].split(b"\0", 1)[0].decode("latin-1").strip())
                pos += -(-length // 4) * 4
            key = name.split(b"\0", 1)[0].decode("latin-1")
            if key in names:
                out[key] = [item for item in items if item]
    except struct.error:
        return {}
    return out


def _mosaic_tiles(ds: _Header, rows: int, cols: int) -> tuple[int, list[tuple[float, float, float] | None]]:
    """A Siemens mosaic (several slices tiled into one image): tiles per side of its square grid,
    and the position of each slice's first pixel (None each where the header lacks the geometry).

    Slice k is tile k in row-major order; only the first NumberOfImagesInMosaic tiles are slices.
    """
    csa = _csa_values(_private(ds, 0x00290010, 0x00291010, "SIEMENS CSA HEADER"),
                      {"NumberOfImagesInMosaic", "SliceNormalVector"})
    count = _private_int(ds, 0x00190010, 0x0019100A, "SIEMENS MR HEADER", "H")
    if not count:
        count = _int(csa.get("NumberOfImagesInMosaic"))
    if not count or count < 1:
        raise _FileSkip("Siemens mosaic without its number of images (NumberOfImagesInMosaic)", failed=True)
    grid = math.ceil(math.sqrt(count))
    if rows % grid or cols % grid:
        raise _FileSkip(f"Siemens mosaic of {rows}x{cols} pixels cannot hold {count} images "
                        f"({grid}x{grid} tiles)", failed=True)
    ipp = _vector(_get(ds, "ImagePositionPatient"), 3)
    iop = _vector(_get(ds, "ImageOrientationPatient"), 6)
    step = _float(_get(ds, "SpacingBetweenSlices")) or _float(_get(ds, "SliceThickness"))
    if ipp is None or iop is None or _degenerate(iop) or not step or step <= 0:
        return grid, [None] * count
    right, down = np.asarray(iop[:3]), np.asarray(iop[3:])
    row_sp, col_sp = _vector(_get(ds, "PixelSpacing"), 2) or (1.0, 1.0)
    # ImagePositionPatient is the corner of the whole mosaic as if it were one slice centred where
    # the first slice is: shift it by half the mosaic minus half a tile (as nibabel and dcm2niix do)
    first = (np.asarray(ipp) + right * col_sp * (cols - cols // grid) / 2
             + down * row_sp * (rows - rows // grid) / 2)
    # tiles follow the CSA slice normal, which may point against row x column (descending slices)
    normal = np.cross(right, down)
    normal /= np.linalg.norm(normal)
    csa_normal = _vector(csa.get("SliceNormalVector"), 3)
    if csa_normal is not None and float(np.dot(csa_normal, normal)) < 0:
        normal = -normal
    return grid, [tuple(float(v) for v in first + k * step * normal) for k in range(count)]


# ------------------------------------------------------------------------------------ detection


def looks_like_dicom(path: Path) -> bool:
    """Cheap test: 'DICM' at byte 128, or a .dcm/.ima/.dicom extension (no parse)."""
    path = Path(path)
    if path.suffix.lower() in {".dcm", ".ima", ".dicom"}:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


# ----------------------------------------------------------------------------------------- scan


@dataclass(slots=True)
class _Image:
    """What scan keeps per image (file or frame): where it is and how to order it."""

    path: str
    frame: int | None
    position: tuple[float, float, float] | None
    instance: int | None
    acquisition: int | None
    trigger: float | None
    native: NativePixels | None = None


@dataclass(slots=True)
class _Group:
    series_uid: str
    series_number: int | None
    patient: str
    iop: tuple[float, ...] | None
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None
    echo_number: int | None
    echo_time: float | None
    component: str | None
    meta: dict[str, Any]
    slice_thickness: float | None
    spacing_between: float | None
    images: list[_Image]


class _FileSkip(Exception):
    def __init__(self, reason: str, failed: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.failed = failed


def _read_header(path: str) -> tuple[_Header, bool, NativePixels | None]:
    """Header-only read (call it under `_quiet()`); returns (header, has_pixel_data, where native
    pixel values are, if they are). Raises _FileSkip for bad files."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
            except InvalidDicomError:
                fh.seek(0)
                head = fh.read(4)
                # old ACR-NEMA style files: no preamble, start with a group 0x0008 element
                if len(head) < 4 or head[:2] not in (b"\x08\x00", b"\x02\x00"):
                    raise _FileSkip("not a DICOM file (no 'DICM' marker)", failed=True) from None
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=_SCAN_TAGS, force=True)
            pos = fh.tell()
            tail = fh.read(12)
            encapsulated_ok = _encapsulated_complete(fh, pos, tail, size, ds)
    except _FileSkip:
        raise
    except OSError as exc:
        raise _FileSkip(f"unreadable: {exc.strerror or exc}", failed=True) from None
    except Exception as exc:  # pydicom raises many kinds of errors for damaged files
        raise _FileSkip(f"damaged or truncated DICOM header ({type(exc).__name__})", failed=True) from None

    meta = getattr(ds, "file_meta", None)
    ts = _get(meta, "TransferSyntaxUID") if meta is not None else None
    if ts == DeflatedExplicitVRLittleEndian:
        # offsets refer to the inflated stream; fall back to a full read with large values deferred
        try:
            full = pydicom.dcmread(path, defer_size=256)
        except Exception:
            raise _FileSkip("damaged deflated DICOM file", failed=True) from None
        return _Header(ds), "PixelData" in full, None
    implicit, little = ds.original_encoding
    if implicit is None:
        implicit, little = False, True
    if len(tail) < 8:
        if tail or pos > size or _short_element(ds, size):
            raise _FileSkip("truncated file (header ends early)", failed=True)
        return _Header(ds), False, None
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", tail[:4])
    tag = group << 16 | elem
    if tag in (0x7FE00008, 0x7FE00009):
        raise _FileSkip("float pixel data is not supported for MR images")
    if tag != 0x7FE00010:
        return _Header(ds), False, None
    if implicit:
        length, head_size = struct.unpack(endian + "L", tail[4:8])[0], 8
    else:
        vr = tail[4:6]
        if vr in (b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN") and len(tail) >= 12:
            length, head_size = struct.unpack(endian + "L", tail[8:12])[0], 12
        else:
            length, head_size = struct.unpack(endian + "H", tail[6:8])[0], 8
    if length != 0xFFFFFFFF and pos + head_size + length > size:
        raise _FileSkip(
            f"truncated file: pixel data needs {length} bytes, {max(size - pos - head_size, 0)} present",
            failed=True,
        )
    if length == 0:
        return _Header(ds), False, None
    if not encapsulated_ok:
        raise _FileSkip("truncated or damaged compressed pixel data", failed=True)
    header = _Header(ds)
    return header, True, _native_pixels(header, ts, pos + head_size, length) if little else None


def _native_pixels(ds: _Header, ts: Any, offset: int, length: int) -> NativePixels | None:
    """Location and decoding of a single uncompressed little-endian frame, else None (the pydicom
    path then reads it)."""
    if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, None) or length == 0xFFFFFFFF:
        return None
    rows, cols = _int(_get(ds, "Rows")), _int(_get(ds, "Columns"))
    bits = _int(_get(ds, "BitsAllocated"))
    frames = _int(_get(ds, "NumberOfFrames")) or 1
    if not rows or not cols or bits not in (8, 16, 32) or frames != 1 or (_int(_get(ds, "SamplesPerPixel")) or 1) != 1:
        return None
    if length < rows * cols * bits // 8:
        return None
    signed = _int(_get(ds, "PixelRepresentation")) == 1
    slope, intercept = _float(_get(ds, "RescaleSlope")), _float(_get(ds, "RescaleIntercept"))
    photometric = str(_get(ds, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    return NativePixels(
        offset=offset,
        dtype=f"<{'i' if signed else 'u'}{bits // 8}",
        bits_stored=_int(_get(ds, "BitsStored")) or bits,
        slope=1.0 if slope is None else slope,
        intercept=0.0 if intercept is None else intercept,
        monochrome1=photometric == "MONOCHROME1",
    )

def _encapsulated_complete(fh: Any, pos: int, tail: bytes, size: int, ds: Any) -> bool:
    """For undefined-length (compressed) pixel data: walk the fragment items to the delimiter."""
    if len(tail) < 12 or tail[:4] != b"\xe0\x7f\x10\x00" or tail[8:12] != b"\xff\xff\xff\xff":
        return True  # not little-endian encapsulated pixel data: checked elsewhere
    offset = pos + 12
    for _ in range(1_000_000):
        fh.seek(offset)
        head = fh.read(8)
        if len(head) < 8:
            return False
        group, elem, length = struct.unpack("<HHL", head)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return True
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            return False
        offset += 8 + length
        if offset > size:
            return False
    return False


def _short_element(ds: Any, size: int) -> bool:
    """True if an element read from the file claims more bytes than the file has (a cut file)."""
    for dataset in (getattr(ds, "file_meta", None), ds):
        if dataset is None:
            continue
        for tag in list(dataset.keys()):
            try:
                elem = dataset.get_item(tag)
            except Exception:
                return True
            tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
            if tell is None or length is None or length == 0xFFFFFFFF:
                continue
            if tell + length > size:
                return True
    return False


def _series_id(ds: _Header) -> str:
    uid = _get(ds, "SeriesInstanceUID")
    if uid:
        return str(uid)
    return f"no-series-uid|{_get(ds, 'StudyInstanceUID') or ''}|{_get(ds, 'SeriesNumber') or ''}"


def _common_meta(ds: _Header, sop: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"modality": str(_get(ds, "Modality") or "MR"), "sop_class": _KEEP_SOP[sop]}
    ts = _get(getattr(ds, "file_meta", None), "TransferSyntaxUID")
    if ts:
        meta["transfer_syntax"] = UID(str(ts)).name
    manufacturer = _get(ds, "Manufacturer")
    if manufacturer:
        meta["manufacturer"] = str(manufacturer).strip()
    for key, keyword in (("magnetic_field_strength", "MagneticFieldStrength"),):
        value = _float(_get(ds, keyword))
        if value is not None:
            meta[key] = value
    acq_type = _get(ds, "MRAcquisitionType")
    if acq_type:
        meta["mr_acquisition_type"] = str(acq_type).strip()
    return meta


def _images_of(path: str, ds: _Header, sop: str,
               keep_components: bool) -> tuple[list[tuple[tuple, dict, _Image]], str | None]:
    """Per image (or frame): (group fields, group meta, record); plus a skip reason if none kept."""
    common = _common_meta(ds, sop)
    series_uid = _series_id(ds)
    series_number = _int(_get(ds, "SeriesNumber"))
    top_type = _strings(_get(ds, "ImageType"))
    descriptions = (_get(ds, "SeriesDescription"), _get(ds, "ProtocolName"))
    rows, cols = _int(_get(ds, "Rows")), _int(_get(ds, "Columns"))
    if not rows or not cols:
        raise _FileSkip("no image matrix (Rows/Columns missing)", failed=True)
    spp = _int(_get(ds, "SamplesPerPixel")) or 1
    if spp != 1:
        raise _FileSkip(f"colour images are not supported ({spp} samples per pixel)")
    acquisition = _int(_get(ds, "AcquisitionNumber"))
    instance = _int(_get(ds, "InstanceNumber"))
    common["photometric_interpretation"] = str(_get(ds, "PhotometricInterpretation") or "MONOCHROME2")

    out: list[tuple[tuple, dict, _Image]] = []
    reasons: Counter[str] = Counter()
    enhanced = sop in (ENHANCED_MR, LEGACY_ENHANCED_MR)
    if not enhanced:
        frames = _int(_get(ds, "NumberOfFrames")) or 1
        if frames > 1:
            raise _FileSkip(f"multi-frame MR Image Storage ({frames} frames) is not supported")
        # (frame, position) per slice: the image itself, or each slice tiled in a Siemens mosaic
        slots: list[tuple[int | None, Any]] = [(None, _vector(_get(ds, "ImagePositionPatient"), 3))]
        if "MOSAIC" in top_type:
            grid, positions = _mosaic_tiles(ds, rows, cols)
            slots = list(enumerate(positions))
            rows, cols = rows // grid, cols // grid
            common["mosaic_grid"] = grid
        entries = [(
            frame,
            top_type,
            _get(ds, "ComplexImageComponent"),
            position,
            _vector(_get(ds, "ImageOrientationPatient"), 6),
            _vector(_get(ds, "PixelSpacing"), 2),
            _float(_get(ds, "SliceThickness")),
            _float(_get(ds, "SpacingBetweenSlices")),
            _int(_get(ds, "EchoNumbers")),
            _float(_get(ds, "EchoTime")),
            _int(_get(ds, "TemporalPositionIdentifier")),
            _float(_get(ds, "DiffusionBValue")),
            _vector(_get(ds, "DiffusionGradientOrientation"), 3),
            None,
            instance,
            _float(_get(ds, "TriggerTime")),
            {
                "repetition_time": _float(_get(ds, "RepetitionTime")),
                "inversion_time": _float(_get(ds, "InversionTime")),
                "flip_angle": _float(_get(ds, "FlipAngle")),
            },
        ) for frame, position in slots]
    else:
        shared = _shared(ds)
        per_frame = _get(ds, "PerFrameFunctionalGroupsSequence")
        n_frames = _int(_get(ds, "NumberOfFrames")) or (len(per_frame) if per_frame else 1)
        entries = []
        for f in range(n_frames):
            def item(keyword: str, f: int = f) -> Any:
                return _fg_item(ds, per_frame, shared, f, keyword)

            ftype = item("MRImageFrameTypeSequence")
            pos = item("PlanePositionSequence")
            ori = item("PlaneOrientationSequence")
            meas = item("PixelMeasuresSequence")
            echo = item("MREchoSequence")
            content = item("FrameContentSequence")
            diff = item("MRDiffusionSequence")
            timing = item("MRTimingAndRelatedParametersSequence")
            cardiac = item("CardiacSynchronizationSequence")
            # Legacy Converted Enhanced MR keeps some classic per-frame values here
            legacy = item("UnassignedPerFrameConvertedAttributesSequence")
            frame_type = _strings(_get(ftype, "FrameType")) or _strings(_get(legacy, "ImageType")) or top_type
            direction = None
            dseq = _get(diff, "DiffusionGradientDirectionSequence")
            if dseq:
                direction = _vector(_get(dseq[0], "DiffusionGradientOrientation"), 3)
            temporal = _int(_get(content, "TemporalPositionIndex"))
            if temporal is None:
                temporal = _int(_get(ds, "TemporalPositionIdentifier"))
            entries.append((
                f,
                frame_type,
                _get(ftype, "ComplexImageComponent") or _get(ds, "ComplexImageComponent"),
                _vector(_get(pos, "ImagePositionPatient"), 3) or _vector(_get(ds, "ImagePositionPatient"), 3),
                _vector(_get(ori, "ImageOrientationPatient"), 6)
                or _vector(_get(ds, "ImageOrientationPatient"), 6),
                _vector(_get(meas, "PixelSpacing"), 2) or _vector(_get(ds, "PixelSpacing"), 2),
                _float(_get(meas, "SliceThickness")) or _float(_get(ds, "SliceThickness")),
                _float(_get(meas, "SpacingBetweenSlices")) or _float(_get(ds, "SpacingBetweenSlices")),
                _int(_get(legacy, "EchoNumbers") or _get(ds, "EchoNumbers")) if echo is None else None,
                _float(_get(echo, "EffectiveEchoTime")) if echo is not None
                else _float(_get(legacy, "EchoTime") or _get(ds, "EchoTime")),
                temporal,
                _float(_get(diff, "DiffusionBValue")),
                direction,
                _int(_get(content, "StackID")),
                _int(_get(content, "InStackPositionNumber")) or f + 1,
                _float(_get(cardiac, "NominalCardiacTriggerDelayTime") or _get(legacy, "TriggerTime")),
                {
                    "repetition_time": _float(_get(timing, "RepetitionTime"))
                    or _float(_get(ds, "RepetitionTime")),
                    "flip_angle": _float(_get(timing, "FlipAngle")) or _float(_get(ds, "FlipAngle")),
                    "inversion_time": _float(_get(ds, "InversionTime")),
                },
            ))

    for (frame, itype, complex_component, position, iop, pixel_spacing, thickness, between, echo_number,
         echo_time, temporal, b_value, b_vector, stack, inst, trigger, timing_meta) in entries:
        if _is_localizer(itype, descriptions):
            reasons["localizer"] += 1
            continue
        component = _component(itype, None if complex_component is None else str(complex_component))
        if component is None and not enhanced:
            component = _ge_component(ds)
        if component and not keep_components:
            reasons[f"{component} image (not magnitude)"] += 1
            continue
        if iop is not None and _degenerate(iop):
            iop = None  # degenerate orientation: treat as unknown
        fields = (
            series_uid, iop, rows, cols,
            None if pixel_spacing is None else (round(pixel_spacing[0], 4), round(pixel_spacing[1], 4)),
            echo_number, _round(echo_time, 3), temporal, itype, component, _round(b_value, 2),
            None if b_vector is None else tuple(round(v, 3) for v in b_vector), stack,
        )
        if "mosaic_grid" in common:  # load cuts tiles by the group's grid: keep other layouts apart
            fields += (common["mosaic_grid"],)
        meta = dict(common)
        meta["image_type"] = list(itype)
        if echo_time is not None:
            meta["echo_time"] = echo_time
        if echo_number is not None:
            meta["echo_number"] = echo_number
        for key, value in timing_meta.items():
            if value is not None:
                meta[key] = value
        if temporal is not None:
            meta["temporal_position"] = temporal
        if b_value is not None:
            meta["diffusion_b_value"] = b_value
        if component:
            meta["complex_component"] = component
        if enhanced:
            meta["multi_frame"] = True
        extra = {
            "series_number": series_number,
            "pixel_spacing": pixel_spacing,
            "slice_thickness": thickness,
            "spacing_between": between,
            "echo_number": echo_number,
            "echo_time": echo_time,
            "component": component,
        }
        out.append((fields, {"meta": meta, **extra},
                    _Image(path, frame, position, inst, acquisition, trigger)))
    reason = None
    if not out:
        reason = ", ".join(f"{r}" if n == 1 else f"{n} frames: {r}" for r, n in reasons.items()) or "no images"
    return out, reason


def scan_dicom(
    paths: Iterable[Path], pseudonymize: Pseudonymizer, *, keep_components: bool = False
) -> Iterator[VolumeInfo | Skipped]:
    """Read headers of `paths`; yield Skipped for files not used (as found), then the volumes."""
    groups: dict[tuple, _Group] = {}
    seen_instances: set[bytes] = set()
    patients: dict[str, str] = {}
    # IOP clustering per series: series uid -> list of reference orientations
    orientations: dict[str, list[tuple[float, ...]]] = defaultdict(list)

    for p in paths:
        path = str(p)
        if Path(path).name.upper() == "DICOMDIR":
            yield Skipped(path, "DICOMDIR (media directory, not an image)")
            continue
        try:
            with _quiet():
                ds, has_pixels, native = _read_header(path)
                meta_sop = str(_get(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID") or "")
                sop = str(_get(ds, "SOPClassUID") or "") or meta_sop
                if meta_sop == "1.2.840.10008.1.3.10":
                    sop = meta_sop
                if not sop:
                    raise _FileSkip("damaged or incomplete DICOM header (no SOP Class UID)", failed=True)
                if sop not in _KEEP_SOP:
                    raise _FileSkip(_sop_skip_reason(sop))
                if not has_pixels:
                    missing = [k for k in _PIXEL_MODULE if _get(ds, k) is None]
                    if missing:  # an image header cut short before its pixel module ended
                        raise _FileSkip("incomplete image header and no pixel data (truncated file?)", failed=True)
                    raise _FileSkip("no pixel data")
                sop_uid = str(_get(ds, "SOPInstanceUID") or "")
                if sop_uid:
                    digest = hashlib.blake2b(sop_uid.encode(), digest_size=12).digest()
                    if digest in seen_instances:
                        raise _FileSkip("duplicate copy of an image already found in another file")
                images, reason = _images_of(path, ds, sop, keep_components)
                if reason:
                    raise _FileSkip(reason)
                if sop_uid:
                    seen_instances.add(digest)
                pid = str(_get(ds, "PatientID") or "")
        except _FileSkip as skip:
            yield Skipped(path, skip.reason, failed=skip.failed)
            continue
        except Exception as exc:  # never raise for a user's bad file
            yield Skipped(path, f"unreadable DICOM header ({type(exc).__name__})", failed=True)
            continue
        if pid not in patients:
            patients[pid] = pseudonymize(pid)
        for fields, extra, image in images:
            # native pixels describe the file's one stored image: a classic image or a whole mosaic
            if native is not None and (image.frame is None or "mosaic_grid" in extra["meta"]):
                image = replace(image, native=native)
            series_uid, iop = fields[0], fields[1]
            if iop is not None:
                for ref in orientations[series_uid]:
                    if max(abs(a - b) for a, b in zip(ref, iop)) < _IOP_TOL:
                        iop = ref
                        break
                else:
                    orientations[series_uid].append(iop)
                fields = (series_uid, iop) + fields[2:]
            group = groups.get(fields)
            if group is None:
                group = groups[fields] = _Group(
                    series_uid=series_uid, series_number=extra["series_number"], patient=patients[pid],
                    iop=iop, rows=fields[2], cols=fields[3], pixel_spacing=extra["pixel_spacing"],
                    echo_number=extra["echo_number"], echo_time=extra["echo_time"],
                    component=extra["component"], meta=extra["meta"],
                    slice_thickness=extra["slice_thickness"], spacing_between=extra["spacing_between"],
                    images=[],
                )
            group.images.append(image)

    yield from _volumes(groups, pseudonymize)


def _echo_labels(keys: list[tuple], groups: dict[tuple, _Group]) -> dict[tuple, int]:
    """Echo label per group for series with more than one echo (empty dict for single-echo series)."""
    echoes = {(groups[k].echo_number, _round(groups[k].echo_time, 3)) for k in keys}
    if len(echoes) <= 1:
        return {}
    numbers = {e[0] for e in echoes}
    by_number = None not in numbers and len(numbers) == len(echoes)
    times = sorted({e[1] for e in echoes}, key=lambda t: (t is None, t or 0.0))
    labels = {}
    for k in keys:
        g = groups[k]
        labels[k] = g.echo_number if by_number else times.index(_round(g.echo_time, 3)) + 1
    return labels


def _position_keys(group: _Group, inplane: InPlane) -> tuple[list[float] | None, str]:
    """Per-image sort coordinate along the canonical normal, or instance numbers as fallback."""
    if group.iop is not None and all(im.position is not None for im in group.images):
        normal = np.asarray(inplane.normal)
        return [float(np.dot(im.position, normal)) for im in group.images], "position"
    if all(im.instance is not None for im in group.images):
        return [float(im.instance) for im in group.images], "instance_number"
    return None, "file"


def _unique_positions(values: list[float]) -> bool:
    ordered = sorted(values)
    return all(b - a > _POS_TOL for a, b in zip(ordered, ordered[1:]))


_Label = tuple[tuple[str, Any], ...]  # how a group was split: (("stack", 1), ("repeat", 2)), ...


def _split_duplicates(images: list[_Image], coords: list[float]) -> list[tuple[_Label, list[int]]] | None:
    """Index lists of volumes with unique positions, or None when the duplicates can't be resolved."""
    index = list(range(len(images)))
    if _unique_positions(coords):
        return [((), index)]
    for attr in ("acquisition", "trigger"):
        values = [getattr(im, attr) for im in images]
        if None in values or len(set(values)) < 2:
            continue
        parts: dict[Any, list[int]] = defaultdict(list)
        for i, v in enumerate(values):
            parts[v].append(i)
        if all(_unique_positions([coords[i] for i in part]) for part in parts.values()):
            return [(((attr, v),), parts[v]) for v in sorted(parts)]
    # repeated acquisitions in one series: every position present equally often -> split by order
    clusters: list[list[int]] = []
    for i in sorted(index, key=lambda i: coords[i]):
        if clusters and coords[i] - coords[clusters[-1][0]] <= _POS_TOL:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    counts = {len(c) for c in clusters}
    if len(counts) != 1:
        return None
    repeats = counts.pop()
    for c in clusters:
        c.sort(key=lambda i: _acquisition_order(images[i]))
    return [((("repeat", r + 1),), [c[r] for c in clusters]) for r in range(repeats)]


def _acquisition_order(image: _Image) -> tuple:
    """Images of one position (or mosaic files) in the order they were acquired, as far as known."""
    return (image.instance is None, image.instance or 0, image.path, image.frame or 0)


def _split_files(images: list[_Image]) -> list[tuple[_Label, list[int]]]:
    """One volume per file, in acquisition order: a Siemens mosaic file is a whole volume (one time
    point or diffusion direction), and its slice positions cannot tell it from the series' other
    mosaics (they are the same, or moved a little by prospective motion correction)."""
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_file[image.path].append(i)
    files = sorted(by_file.values(), key=lambda idx: _acquisition_order(images[idx[0]]))
    return [((("volume", k + 1),) if len(files) > 1 else (), idx) for k, idx in enumerate(files)]


def _split(images: list[_Image], coords: list[float], inplane: InPlane, group: _Group,
           by_position: bool) -> list[tuple[_Label, list[int]]] | None:
    """Split a group into volumes: first parallel stacks side by side, then duplicated positions.

    Stacks with the same orientation but shifted in-plane (e.g. spine stations) are separate volumes;
    in MR all slices of one stack lie on a line along the normal. Mosaics are split by file.
    """
    if "mosaic_grid" in group.meta:
        return _split_files(images)
    stacks = [list(range(len(images)))]
    if by_position and len(images) > 1:
        normal = np.asarray(inplane.normal)
        pos = np.asarray([im.position for im in images], dtype=float)
        offsets = pos - np.outer(pos @ normal, normal)
        tol = max(0.5, 0.5 * min(group.pixel_spacing or (1.0, 1.0)))
        if float(np.max(np.linalg.norm(offsets - offsets[0], axis=1))) > tol:
            refs: list[np.ndarray] = []
            stacks = []
            for i, off in enumerate(offsets):
                for k, ref in enumerate(refs):
                    if float(np.linalg.norm(off - ref)) <= tol:
                        stacks[k].append(i)
                        break
                else:
                    refs.append(off)
                    stacks.append([i])
    out: list[tuple[_Label, list[int]]] = []
    for k, members in enumerate(stacks):
        sub = _split_duplicates([images[i] for i in members], [coords[i] for i in members])
        if sub is None:
            return None
        prefix: _Label = (("stack", k + 1),) if len(stacks) > 1 else ()
        out.extend((prefix + label, [members[i] for i in idx]) for label, idx in sub)
    return out


def _slice_step(coords: list[float] | None, by_position: bool, group: _Group) -> tuple[float, dict[str, Any]]:
    notes: dict[str, Any] = {}
    if by_position and coords is not None and len(coords) > 1:
        gaps = np.diff(np.asarray(coords))
        step = float(np.median(gaps))
        if step > 0:
            spread = float(np.max(np.abs(gaps - step)))
            uniform = spread <= max(0.01, 0.05 * step)
            notes["uniform_slice_spacing"] = bool(uniform)
            if not uniform:
                notes["slice_gap_range_mm"] = [round(float(gaps.min()), 4), round(float(gaps.max()), 4)]
            return step, notes
    for value in (group.spacing_between, group.slice_thickness):
        if value is not None and value > 0:
            return float(value), notes
    return 1.0, notes


def _key_repr(key: tuple) -> str:
    """Group values without the series UID, orientation rounded so jitter does not change it."""
    iop = key[1]
    rest = (None if iop is None else tuple(round(v, 3) + 0.0 for v in iop),) + tuple(key[2:])
    return repr(rest)


def _volumes(groups: dict[tuple, _Group], pseudonymize: Pseudonymizer) -> Iterator[VolumeInfo | Skipped]:
    by_series: dict[str, list[tuple]] = defaultdict(list)
    for key in groups:
        by_series[key[0]].append(key)
    out: list[VolumeInfo | Skipped] = []
    for series_uid, keys in by_series.items():
        echo_labels = _echo_labels(keys, groups)
        for key in keys:
            group = groups[key]
            out.extend(_group_volumes(series_uid, key, group, echo_labels.get(key),
                                      len(set(echo_labels.values())), pseudonymize))
    out.sort(key=lambda v: (0, v.meta.get("series_number") or 0, v.name) if isinstance(v, VolumeInfo)
             else (1, 0, v.path))
    used: set[str] = set()
    for item in out:
        if isinstance(item, VolumeInfo) and item.name in used:  # (hash collision) keep names unique
            n = 2
            while f"{item.name}_{n}" in used:
                n += 1
            item = replace(item, name=f"{item.name}_{n}")
        if isinstance(item, VolumeInfo):
            used.add(item.name)
        yield item


def _group_volumes(series_uid: str, key: tuple, group: _Group, echo: int | None, n_echoes: int,
                   pseudonymize: Pseudonymizer) -> list[VolumeInfo | Skipped]:
    inplane = canonical_inplane(np.asarray(group.iop[:3]), np.asarray(group.iop[3:])) if group.iop else IDENTITY
    images = group.images
    coords, order_by = _position_keys(group, inplane)
    if coords is None:  # neither positions nor instance numbers: file name order
        ranked = sorted(range(len(images)), key=lambda i: (images[i].path, images[i].frame or 0))
        coords = [0.0] * len(images)
        for rank, i in enumerate(ranked):
            coords[i] = float(rank)
    parts = _split(images, coords, inplane, group, order_by == "position")
    series = group.series_number if group.series_number is not None else "?"
    if parts is None:
        return [Skipped(
            images[0].path,
            f"series {series}: {len(images)} images with duplicated slice positions that could not be "
            "separated into volumes",
        )]
    trigger_rank = {t: i + 1 for i, t in enumerate(sorted({v for label, _ in parts for k, v in label
                                                            if k == "trigger"}))}
    out: list[VolumeInfo | Skipped] = []
    group_repr = _key_repr(key)
    for label, part in parts:
        part = sorted(part, key=lambda i: (coords[i], images[i].instance or 0, images[i].path, images[i].frame or 0))
        step, notes = _slice_step([coords[i] for i in part], order_by == "position", group)
        row_sp, col_sp = group.pixel_spacing or (1.0, 1.0)
        r_sp, c_sp = inplane.spacing(row_sp, col_sp)
        rows, cols = (group.cols, group.rows) if inplane.transpose else (group.rows, group.cols)
        number = group.series_number if group.series_number is not None and group.series_number >= 0 else 0
        name = f"s{number:03d}_{pseudonymize(series_uid + '|' + group_repr + '|' + repr(label), 8)}"
        if echo is not None:
            name += f"_e{echo}"
        if group.component:
            name += _COMPONENT_SUFFIX.get(group.component, "_x")
        meta = dict(group.meta)
        meta.update(notes)
        for kind, value in label:
            if kind == "stack":
                name += f"_st{value}"
                meta["stack"] = value
            elif kind == "acquisition":
                name += f"_a{value}"
                meta["acquisition_number"] = value
            elif kind == "trigger":
                name += f"_t{trigger_rank[value]}"
                meta["trigger_time"] = value
            elif kind == "repeat":
                name += f"_r{value}"
                meta["repeat"] = value
            elif kind == "volume":
                name += f"_v{value}"
                meta["volume_index"] = value
        if label:
            meta["split_by"] = [kind for kind, _ in label]
        meta["series_number"] = group.series_number
        meta["plane"] = inplane.plane
        meta["slice_order"] = order_by
        if group.iop is not None:
            meta["image_orientation"] = [round(v, 6) + 0.0 for v in group.iop]
        meta["inplane_transform"] = {
            "transpose": inplane.transpose, "flip_rows": inplane.flip_rows, "flip_cols": inplane.flip_cols,
        }
        meta["stored_shape"] = [group.rows, group.cols]
        if group.slice_thickness is not None:
            meta["slice_thickness"] = group.slice_thickness
        if group.pixel_spacing is None:
            meta["pixel_spacing_assumed"] = True  # no PixelSpacing: 1 mm used
        if echo is not None:
            meta["echo_index"] = echo
            meta["n_echoes"] = n_echoes
        meta = {k: v for k, v in meta.items() if v is not None}
        out.append(VolumeInfo(
            source_kind="dicom",
            name=name,
            key=stable_key(series_uid, group_repr, repr(label)),
            patient=group.patient,
            slices=tuple(SliceRef(images[i].path, images[i].frame, images[i].native) for i in part),
            shape=(len(part), rows, cols),
            spacing=(float(step), float(r_sp), float(c_sp)),
            meta=meta,
        ))
    return out


# ----------------------------------------------------------------------------------------- load


def _inplane_of(info: VolumeInfo) -> InPlane:
    t = info.meta.get("inplane_transform")
    iop = info.meta.get("image_orientation")
    if iop is not None and len(iop) == 6:
        inplane = canonical_inplane(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    else:
        inplane = IDENTITY
    if isinstance(t, dict):
        inplane = InPlane(inplane.plane, bool(t.get("transpose")), bool(t.get("flip_rows")),
                          bool(t.get("flip_cols")), inplane.normal)
    return inplane


def _codec_error(path: str, ts: UID) -> SourceError:
    return SourceError(
        f"{path}: no decoder available for transfer syntax '{ts.name}' ({ts}); {CODECS_FIX}"
    )


def _read_pixels(path: str, frames: list[int | None]) -> tuple[list[np.ndarray], list[tuple[float, float]], bool]:
    """Decoded frames (as stored), their (slope, intercept), and whether the file is MONOCHROME1."""
    from pydicom.pixels import get_decoder, pixel_array

    try:
        with _quiet():
            ds = pydicom.dcmread(path)
    except Exception as exc:
        raise SourceError(f"{path}: cannot read DICOM file ({type(exc).__name__}: {exc})") from None
    file_meta = getattr(ds, "file_meta", None)
    ts = UID(str(_get(file_meta, "TransferSyntaxUID") or "1.2.840.10008.1.2"))
    if "PixelData" not in ds:
        raise SourceError(f"{path}: pixel data missing or truncated")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise SourceError(f"{path}: transfer syntax '{ts.name}' ({ts}) is not supported") from None
    if not decoder.is_available:
        raise _codec_error(path, ts)

    shared = _shared(ds)
    per_frame = _get(ds, "PerFrameFunctionalGroupsSequence")
    photometric = str(_get(ds, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    arrays, scales = [], []
    try:
        with _quiet():
            for frame in frames:
                if frame is None:
                    arr = pixel_array(ds)
                    if arr.ndim == 3:  # a single frame written with NumberOfFrames = 1
                        arr = arr[0]
                    slope, intercept = _float(_get(ds, "RescaleSlope")), _float(_get(ds, "RescaleIntercept"))
                else:
                    arr = pixel_array(ds, index=frame)
                    pvt = _fg_item(ds, per_frame, shared, frame, "PixelValueTransformationSequence")
                    slope = _float(_get(pvt, "RescaleSlope"))
                    intercept = _float(_get(pvt, "RescaleIntercept"))
                    if slope is None and intercept is None:
                        slope, intercept = _float(_get(ds, "RescaleSlope")), _float(_get(ds, "RescaleIntercept"))
                arrays.append(arr)
                scales.append((1.0 if slope is None else slope, 0.0 if intercept is None else intercept))
    except SourceError:
        raise
    except Exception as exc:
        text = str(exc)
        if "missing dependencies" in text or "plugins" in text and "unavailable" in text:
            raise _codec_error(path, ts) from None
        raise SourceError(
            f"{path}: cannot decode pixel data ({ts.name}): {type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        ) from None
    return arrays, scales, photometric == "MONOCHROME1"


def _read_native(path: str, native: NativePixels, shape: tuple[int, int]) -> np.ndarray:
    """One uncompressed frame straight from the file, decoded as pydicom does it: values masked to
    BitsStored (sign-extended when signed), then rescaled."""
    dtype = np.dtype(native.dtype)
    count = shape[0] * shape[1]
    try:
        with open(path, "rb") as fh:
            fh.seek(native.offset)
            values = np.fromfile(fh, dtype=dtype, count=count)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read pixel data ({exc.strerror or exc})") from None
    if values.size != count:
        raise SourceError(f"{path}: pixel data ends early (file changed since scan?)")
    unused = dtype.itemsize * 8 - native.bits_stored
    if 0 < unused < dtype.itemsize * 8:
        if dtype.kind == "u":
            values &= np.array((1 << native.bits_stored) - 1, dtype=dtype)
        else:
            values = (values << unused) >> unused  # arithmetic shift restores the sign
    pixels = values.reshape(shape).astype(np.float32)
    if native.slope != 1.0 or native.intercept != 0.0:
        pixels = pixels * np.float32(native.slope) + np.float32(native.intercept)
    return pixels


def _file_images(path: str, frames: list[int | None], natives: list[NativePixels | None],
                 shape: tuple[int, int]) -> tuple[list[np.ndarray], bool]:
    """Stored images (frames) of one file, rescaled float32, and whether the file is MONOCHROME1;
    read straight from the file where scan found where the values are, else decoded by pydicom."""
    if all(native is not None for native in natives):
        return [_read_native(path, native, shape) for native in natives], natives[0].monochrome1
    arrays, scales, mono1 = _read_pixels(path, frames)
    images = []
    for arr, (slope, intercept) in zip(arrays, scales):
        if arr.ndim != 2 or tuple(arr.shape) != shape:
            raise SourceError(f"{path}: image is {tuple(arr.shape)}, expected {shape} (file changed since scan?)")
        values = arr.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            values = values * np.float32(slope) + np.float32(intercept)
        images.append(values)
    return images, mono1


def _tile(mosaic: np.ndarray, k: int, grid: int) -> np.ndarray:
    """Tile `k` (row-major) of a mosaic of `grid` x `grid` tiles."""
    rows, cols = mosaic.shape[0] // grid, mosaic.shape[1] // grid
    r, c = divmod(k, grid)
    return mosaic[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols]


def load_dicom(info: VolumeInfo) -> np.ndarray:
    """Pixels of a scanned volume: float32 (slices, rows, cols), rescaled, canonical orientation."""
    inplane = _inplane_of(info)
    n, rows, cols = info.shape
    stored = (cols, rows) if inplane.transpose else (rows, cols)
    grid = int(info.meta.get("mosaic_grid") or 0)
    out = np.empty((n, rows, cols), dtype=np.float32)
    by_file: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for i, ref in enumerate(info.slices):
        by_file[ref.path].append((i, ref.frame))
    inverted: list[int] = []
    for path, items in by_file.items():
        if grid:  # a mosaic: its one stored image holds slice k as tile k
            (mosaic,), mono1 = _file_images(path, [None], [info.slices[items[0][0]].native],
                                            (stored[0] * grid, stored[1] * grid))
            images = [_tile(mosaic, k, grid) for _, k in items]
        else:
            images, mono1 = _file_images(path, [frame for _, frame in items],
                                         [info.slices[i].native for i, _ in items], stored)
        for (i, _), image in zip(items, images):
            out[i] = inplane.apply(image)
        if mono1:
            inverted.extend(i for i, _ in items)
    if inverted:
        # MONOCHROME1: low values are bright; flip over the common range of those slices
        sel = out[inverted]
        out[inverted] = (sel.max() + sel.min()) - sel
    return out
