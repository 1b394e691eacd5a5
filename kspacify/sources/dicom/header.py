"""Reading one DICOM file's header: the elements the scan needs, decoded once, and where its pixels are.

The scan reads headers only (`stop_before_pixels`), and only the elements in `SCAN_TAGS`: pydicom
steps over the rest without decoding them. What it reads is checked against the file's size, so a
cut file is reported as truncated instead of failing later at load time, and for uncompressed
little-endian files the offset of the pixel values is kept (`NativePixels`) so loading needs one
`numpy.fromfile`, not a second parse. Value helpers (`as_float`, `as_vector`, ...) turn whatever a
file holds into a number or None, never an exception.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.hooks import hooks as pydicom_hooks
from pydicom.hooks import raw_element_value, raw_element_vr
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import AMBIGUOUS_VR, EXPLICIT_VR_LENGTH_32, STANDARD_VR
from pydicom.values import convert_value

from ..base import NativePixels

__all__ = [
    "FAST_READER", "FileSkip", "Header", "KEYWORDS", "PIXEL_MODULE", "SCAN_TAGS", "as_float", "as_int", "as_strings", "as_vector",
    "degenerate", "get", "header_of", "is_gzip", "open_dicom", "native_pixels", "quiet", "read_header", "rounded",
]

# Header elements scan needs; everything else is skipped without being decoded. As tags: dcmread
# would look names up on every call.
SCAN_TAGS = [Tag(t) for t in (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "Modality", "Manufacturer",
    "SeriesDescription", "ProtocolName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
    "SeriesNumber", "AcquisitionNumber", "InstanceNumber", "ImagePositionPatient",
    "ImageOrientationPatient", "TemporalPositionIdentifier", "SliceThickness", "SpacingBetweenSlices",
    "RepetitionTime", "EchoTime", "InversionTime", "EchoNumbers", "MagneticFieldStrength", "FlipAngle",
    "TriggerTime", "MRAcquisitionType", "DiffusionBValue", "DiffusionGradientOrientation",
    "ComplexImageComponent", "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "Rows",
    "Columns", "PixelSpacing", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope",
    "RescaleIntercept", "DiffusionDirectionality", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence", "ScanningSequence", "SequenceVariant", "EchoPulseSequence",
    "EchoPlanarPulseSequence", "FrameOfReferenceUID", "RescaleType",
    0x00430010, 0x0043102F,  # GE private creator and image type (0 magnitude, 1 phase, 2 real, 3 imaginary)
    0x00190010, 0x0019100A,  # Siemens private creator and NumberOfImagesInMosaic
    0x00290010, 0x00291010,  # Siemens private creator and CSA image header (mosaic tile count, slice normal)
    0x00650010, 0x00651050, 0x00651051,  # UIH private creator, slices per VFRAME mosaic, their positions (SQ)
    0x20010010, 0x20011003, 0x20011004,  # Philips private creator, diffusion b-factor and direction ('I': isotropic)
    0x20050010, 0x2005100E,  # Philips private creator and ScaleSlope (precise value = displayed / (slope x scale))
)]
KEYWORDS = {tag: keyword_for_tag(tag) or int(tag) for tag in SCAN_TAGS}  # Header keys; private: the tag
_KEYWORD_OF = {int(tag): key for tag, key in KEYWORDS.items()}
# Public tags whose raw elements `Header` may decode itself, with their dictionary VR: not for a
# sequence or an ambiguous VR (`ds[tag]` post-processes those). (Specific Character Set is a CS,
# whose converter ignores the charset it is given.)
_PLAIN_VR = {int(tag): dictionary_VR(tag) for tag in SCAN_TAGS if not tag.is_private
             and dictionary_VR(tag) != "SQ" and dictionary_VR(tag) not in AMBIGUOUS_VR}
# VRs of private elements (as written in explicit VR files) that `ds[tag]` decodes with the same
# one call as a public element's: not UN (which pydicom may replace), SQ or an ambiguous VR
_PLAIN_PRIVATE_VR = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
                               "OL", "OV", "OW", "SH", "SL", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UR", "US",
                               "UT", "UV"})
PIXEL_MODULE = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation", "SamplesPerPixel")


class FileSkip(Exception):
    """A file the scan does not use: `reason` says why; `failed` when it is a fault (damaged file)."""

    def __init__(self, reason: str, failed: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.failed = failed


@contextmanager
def quiet() -> Iterator[None]:
    """Silence pydicom's warnings and log records about odd-but-readable files, and skip its value
    validation while reading (it only warns, and costs ~15% of a header read)."""
    logger = logging.getLogger("pydicom")
    disabled = logger.disabled  # (not setLevel: that clears every logger's cache, twice per file)
    validation = pydicom.config.settings.reading_validation_mode
    logger.disabled = True
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled
        pydicom.config.settings.reading_validation_mode = validation


def get(ds: Any, keyword: str) -> Any:
    """Element value or None; a malformed value reads as None instead of raising."""
    if ds is None:
        return None
    try:
        return ds.get(keyword)
    except Exception:
        return None


class Header(dict):
    """The top-level element values a scan read (`SCAN_TAGS`), by keyword (private ones by tag),
    each decoded once, with the dataset as `.ds` and its `.file_meta`. A value that fails to decode
    is left out, so it reads as None, as with `get`. (Going through `ds.get(keyword)` for every
    use was most of the header pass.)"""

    def __init__(self, ds: Any, raw: dict[int, Any] | None = None):
        """`raw`: the dataset's raw elements by int tag, where the caller made them (the fast
        reader), so that they need not be looked up through the dataset."""
        super().__init__()
        self.ds = ds
        self.file_meta = getattr(ds, "file_meta", None)
        # bytes of native pixel data, items of encapsulated pixel data (None: unknown), set by read_header
        self.pixel_length: int | None = None
        self.pixel_items: int | None = None
        charset = ds.original_character_set if _default_decoding() else None
        items = raw.items() if raw is not None else ((int(tag), ds.get_item(tag)) for tag in ds.keys())
        for tag, elem in items:  # int tags: BaseTag's Python-level __eq__ made every lookup slow
            try:
                self[_KEYWORD_OF.get(tag, tag)] = _element_value(ds, tag, charset, elem)
            except Exception:
                continue


def _default_decoding() -> bool:
    """pydicom turns raw elements into values with its stock hooks (no callbacks configured)."""
    return (pydicom_hooks.raw_element_vr is raw_element_vr and pydicom_hooks.raw_element_value is raw_element_value
            and not pydicom_hooks.raw_element_kwargs and not pydicom.config.data_element_callback)


def _element_value(ds: Any, tag: int, charset: Any, raw: Any) -> Any:
    """`ds[tag].value`, `raw` being `ds.get_item(tag)`. A plain element (`_PLAIN_VR`) of a dataset
    read from a file (`charset`: its character set, given only when pydicom decodes as stock) is
    decoded with the one call `ds[tag]` would end in, skipping the dataset's bookkeeping, which
    cost more than the decoding."""
    vr = _PLAIN_VR.get(tag)
    if vr is None and tag & 0x10000 and isinstance(raw, RawDataElement) and raw.VR in _PLAIN_PRIVATE_VR:
        vr = raw.VR  # an explicit VR that pydicom would not replace: decoded the same way
    if charset and vr and isinstance(raw, RawDataElement) and raw.VR in (None, vr):
        # the files of a series repeat most values byte for byte (orientation, spacing, UIDs,
        # timing): each distinct one is decoded once. Values are shared, never mutated.
        small = raw.value is not None and len(raw.value) <= 256  # (not a CSA header)
        key = (vr, raw.value, raw.is_little_endian, charset if isinstance(charset, str) else tuple(charset))
        value = _DECODED.get(key, _DECODED) if small else _DECODED
        if value is not _DECODED:
            return value
        try:
            value = convert_value(vr, raw, charset)
        except Exception:
            pass  # the full path decides: a VR 'UN' fallback, or the same error
        else:
            if small:
                if len(_DECODED) >= _DECODED_MAX:
                    _DECODED.clear()
                _DECODED[key] = value
            return value
    return ds[BaseTag(tag)].value


_DECODED: dict[tuple, Any] = {}  # (VR, raw bytes, little endian, charset) -> value
_DECODED_MAX = 1 << 14


# ------------------------------------------------------------------------------- value helpers


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def as_float(value: Any) -> float | None:
    """The first value as a finite float, else None."""
    vals = _values(value)
    if not vals:
        return None
    try:
        out = float(vals[0])
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def as_int(value: Any) -> int | None:
    """The first value rounded to an int, else None."""
    f = as_float(value)
    return int(round(f)) if f is not None else None


def as_vector(value: Any, n: int) -> tuple[float, ...] | None:
    """Exactly `n` finite floats, else None."""
    vals = _values(value)
    if len(vals) != n:
        return None
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def as_strings(value: Any) -> tuple[str, ...]:
    """Non-empty values, stripped and upper-cased (ImageType tokens)."""
    return tuple(str(v).strip().upper() for v in _values(value) if str(v).strip())


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@lru_cache(maxsize=1024)
def degenerate(iop: tuple[float, ...]) -> bool:
    """Row and column cosines (nearly) parallel; cached, as all slices of a stack share them."""
    return bool(np.linalg.norm(np.cross(iop[:3], iop[3:])) < 1e-3)


# ----------------------------------------------------------------------------------- the read


def read_header(path: str) -> tuple[Header, bool, NativePixels | None]:
    """Header-only read (call it under `quiet()`); returns (header, has_pixel_data, where native
    pixel values are, if they are). Raises FileSkip for bad files."""
    try:
        fh, size = open_dicom(path)
        with fh:
            fast = _fast_read(fh, size) if FAST_READER else None
            if fast is not None:
                ds, pos, tail, raw = fast
            else:
                fh.seek(0)
                ds, raw = _pydicom_read(fh), None
                pos = fh.tell()
                tail = fh.read(12)
            items = _encapsulated_items(fh, pos, tail, size)
    except FileSkip:
        raise
    except OSError as exc:
        raise FileSkip(f"unreadable: {exc.strerror or exc}", failed=True) from None
    except Exception as exc:  # pydicom raises many kinds of errors for damaged files
        raise FileSkip(f"damaged or truncated DICOM header ({type(exc).__name__})", failed=True) from None

    meta = getattr(ds, "file_meta", None)
    if getattr(fh, "deflated", False) and meta is not None:  # inflated here: say what the file is
        if isinstance(meta, dict):
            meta["TransferSyntaxUID"] = DeflatedExplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ts = get(meta, "TransferSyntaxUID") if meta is not None else None
    implicit, little = ds.original_encoding
    if implicit is None:
        implicit, little = False, True
    if len(tail) < 8:
        if tail or pos > size or _short_element(ds, size):
            raise FileSkip("truncated file (header ends early)", failed=True)
        return Header(ds, raw), False, None
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", tail[:4])
    tag = group << 16 | elem
    if tag in (0x7FE00008, 0x7FE00009):
        raise FileSkip("float pixel data (Float or Double Float Pixel Data) in an MR image: not supported, "
                       "the image is not converted", failed=True)
    if tag != 0x7FE00010:
        return Header(ds, raw), False, None
    if implicit:
        length, head_size = struct.unpack(endian + "L", tail[4:8])[0], 8
    else:
        vr = tail[4:6]
        if vr in (b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN") and len(tail) >= 12:
            length, head_size = struct.unpack(endian + "L", tail[8:12])[0], 12
        else:
            length, head_size = struct.unpack(endian + "H", tail[6:8])[0], 8
    if length != 0xFFFFFFFF and pos + head_size + length > size:
        raise FileSkip(
            f"truncated file: pixel data needs {length} bytes, {max(size - pos - head_size, 0)} present",
            failed=True,
        )
    if length == 0:
        return Header(ds, raw), False, None
    if items == 0:
        raise FileSkip("truncated or damaged compressed pixel data", failed=True)
    header = Header(ds, raw)
    header.pixel_length = None if length == 0xFFFFFFFF else length
    header.pixel_items = items
    return header, True, native_pixels(header, ts, pos + head_size, length) if little else None


GZIP_MAGIC = b"\x1f\x8b"
MAX_GUNZIPPED = 2 << 30  # bytes; a gzip member that inflates past this is not read (a zip bomb)


def is_gzip(path: str | os.PathLike[str]) -> bool:
    """The file starts with the gzip magic number (a `.dcm.gz`, as some PACS exports write them)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


def open_dicom(path: str | os.PathLike[str]) -> tuple[Any, int]:
    """A binary file object for a DICOM file and its size: the file itself, or, for a gzipped or a
    deflated one (Deflated Explicit VR Little Endian), its inflated bytes in memory (offsets found
    in it refer to those; `_inflated`). Raises FileSkip for a damaged or oversized gzip or deflated
    file, OSError for an unreadable one."""
    fh = open(path, "rb")
    head = fh.read(1024)
    if head[:2] != GZIP_MAGIC:
        if _DEFLATED_UID not in head:
            fh.seek(0)
            return fh, os.fstat(fh.fileno()).st_size
        with fh:
            return _inflated(head + fh.read())
    fh.seek(0)
    try:
        with gzip.GzipFile(fileobj=fh) as gz:
            data = gz.read(MAX_GUNZIPPED + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileSkip(f"damaged gzip file ({type(exc).__name__})", failed=True) from None
    finally:
        fh.close()
    if len(data) > MAX_GUNZIPPED:
        raise FileSkip(f"gzip file inflates to more than {MAX_GUNZIPPED >> 30} GiB", failed=True)
    if _DEFLATED_UID in data[:1024]:
        return _inflated(data)
    return io.BytesIO(data), len(data)


# ------------------------------------------------------------------------- deflated datasets
#
# A Deflated Explicit VR Little Endian file is its file meta, then the dataset deflated. pydicom
# inflates it whole (and a few hundred KiB can inflate to gigabytes), so it is inflated here, with
# a bound: first until the header is there (at most DEFLATE_HEADER_MAX), then up to the end of the
# pixels the header claims (and DEFLATE_SLACK for elements after them). A file that inflates
# beyond is refused. What is handed on is the file as if it had been written explicit VR little
# endian (its file meta saying so), and `deflated` on it says what it was.

_DEFLATED_UID = DeflatedExplicitVRLittleEndian.encode()
DEFLATE_HEADER_MAX = 64 << 20
DEFLATE_SLACK = 1 << 20


class Inflated(io.BytesIO):
    """A deflated file's dataset, inflated, behind its file meta rewritten to explicit VR little endian."""

    deflated = True


def _meta_elements(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The file meta elements (tag, bytes of the whole element) from byte 132, and where they end."""
    elements, pos = [], 132
    while pos + 8 <= len(data):
        group, elem, vr, length = _EXPLICIT_HEAD.unpack_from(data, pos)
        if group != 0x0002:
            break
        start = pos + 8
        if _VR_LONG.get(vr):
            if pos + 12 > len(data):
                break
            length, start = _UINT32.unpack_from(data, pos + 8)[0], pos + 12
        elements.append((group << 16 | elem, data[pos:start + length]))
        pos = start + length
    return elements, pos


def _inflated(data: bytes) -> tuple[Any, int]:
    if data[128:132] != b"DICM":
        return io.BytesIO(data), len(data)
    elements, end = _meta_elements(data)
    syntax = next((raw[8:].rstrip(b"\0 ") for tag, raw in elements if tag == 0x00020010), b"")
    if syntax != _DEFLATED_UID or end > len(data):
        return io.BytesIO(data), len(data)
    explicit = ExplicitVRLittleEndian.encode() + b"\0"  # (an even length)
    body = b"".join(_EXPLICIT_HEAD.pack(2, 0x10, b"UI", len(explicit)) + explicit if tag == 0x00020010 else raw
                    for tag, raw in elements if tag != 0x00020000)  # fmt: skip
    group_length = _EXPLICIT_HEAD.pack(2, 0, b"UL", 4) + _UINT32.pack(len(body))
    head = data[:132] + group_length + body
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, out = data[end:], bytearray()

    def grow(limit: int) -> None:
        nonlocal pending
        while len(out) < limit:
            chunk = inflater.decompress(pending, limit - len(out))
            pending = inflater.unconsumed_tail
            if not chunk:
                return
            out.extend(chunk)

    try:
        budget = 1 << 20
        while True:
            grow(budget)
            pixels = _claimed_pixels(head + bytes(out))
            if pixels is not None or inflater.eof or len(out) < budget:
                break
            if budget >= DEFLATE_HEADER_MAX:
                raise FileSkip(f"deflated file whose header inflates to more than {DEFLATE_HEADER_MAX >> 20} MiB: "
                               "refused", failed=True)  # fmt: skip
            budget *= 4
        if pixels is not None:
            offset, claimed = pixels
            allowed = offset + 12 + claimed + DEFLATE_SLACK - len(head)
            grow(allowed + 1)
            if len(out) > allowed:
                raise FileSkip(f"deflated file inflates to more than {allowed + len(head)} bytes, its header and the "
                               f"{claimed} bytes of pixels it claims: refused", failed=True)  # fmt: skip
    except zlib.error as exc:
        raise FileSkip(f"damaged deflated DICOM file ({exc})", failed=True) from None
    stream = Inflated(head + bytes(out))
    return stream, len(stream.getbuffer())


def _claimed_pixels(data: bytes) -> tuple[int, int] | None:
    """(offset of the pixel data element, bytes of pixels the header claims) of a file as far as it
    has been inflated, or None while its header is not all there."""
    fh = io.BytesIO(data)
    try:
        with quiet():
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=[Tag(t) for t in PIXEL_MODULE + ("NumberOfFrames",)])
    except Exception:
        return None
    offset = fh.tell()
    tag = struct.unpack("<HH", data[offset:offset + 4]) if offset + 4 <= len(data) else None
    if tag is None or (tag[0] << 16 | tag[1]) not in _PIXEL_TAGS:
        return None
    values = [as_int(get(ds, k)) or 1 for k in ("Rows", "Columns", "SamplesPerPixel", "NumberOfFrames")]
    bits = as_int(get(ds, "BitsAllocated")) or 16
    return offset, values[0] * values[1] * values[2] * values[3] * max(bits, 8) // 8


def _pydicom_read(fh: Any) -> Any:
    """The header read by pydicom itself: what every file falls back to that the fast reader
    leaves alone."""
    try:
        return pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=SCAN_TAGS)
    except InvalidDicomError:
        fh.seek(0)
        head = fh.read(4)
        # old ACR-NEMA style files: no preamble, start with a group 0x0008 element
        if len(head) < 4 or head[:2] not in (b"\x08\x00", b"\x02\x00"):
            raise FileSkip("not a DICOM file (no 'DICM' marker)", failed=True) from None
        fh.seek(0)
        return pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=SCAN_TAGS, force=True)


# ------------------------------------------------------------------------------ fast reader
#
# For the common file (preamble, file meta, little-endian dataset, pixel data at the end) the
# element headers are walked here and only the SCAN_TAGS elements are handed to pydicom, as the
# RawDataElements its own reader would have made of them, so every value is decoded by pydicom
# exactly as before; what is skipped is pydicom's generic per-element reading (and its parsing
# of every undefined-length sequence, needed or not), most of the header pass. Anything unusual
# (no preamble, big endian, deflate, a needed sequence such as Enhanced MR's functional groups,
# an element that runs past the end of the file, an odd VR, no pixel data) returns None, and
# pydicom reads the file as before.

# False (or KSPACIFY_DICOM_PARSER=pydicom in the environment): pydicom reads every header
FAST_READER = os.environ.get("KSPACIFY_DICOM_PARSER", "").strip().lower() != "pydicom"
_WANTED = frozenset(int(t) for t in SCAN_TAGS) | {0x00080005}
_IMPLICIT_VR = {int(t): (None if t.is_private else dictionary_VR(t)) for t in SCAN_TAGS}
_IMPLICIT_VR[0x00080005] = "CS"
# every standard VR: True where its length takes 32 bits; anything else is left to pydicom
_VR_LONG = {vr.encode(): vr in EXPLICIT_VR_LENGTH_32 for vr in STANDARD_VR}
_SQ_TAGS = frozenset(int(t) for t in SCAN_TAGS if not t.is_private and dictionary_VR(t) == "SQ") | {0x00651051}
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_CHUNK = 1 << 16
_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_IMPLICIT_HEAD = struct.Struct("<HHL")
_UINT32 = struct.Struct("<L")


class _Unusual(Exception):
    """Raised inside the fast reader: let pydicom read this file."""


@lru_cache(maxsize=64)
def _syntax(ts: str) -> bool | None:
    """True: implicit VR little endian; False: explicit VR little endian (also encapsulated
    syntaxes, whose dataset is encoded so); None: anything else (big endian, deflate, unknown)."""
    uid = UID(ts)
    if uid == ImplicitVRLittleEndian:
        return True
    if uid == ExplicitVRLittleEndian or (uid.is_transfer_syntax and uid.is_little_endian
                                         and not uid.is_implicit_VR and not uid.is_deflated):
        return False
    return None


class _Buffer:
    """The file's first bytes, read further as the walk needs them."""

    def __init__(self, fh: Any, size: int):
        self.fh, self.size = fh, size
        self.data = fh.read(_CHUNK)

    def need(self, end: int) -> bytes:
        if end > self.size:
            raise _Unusual("element runs past the end of the file")
        if end > len(self.data):
            self.data += self.fh.read(max(_CHUNK, end - len(self.data)))
            if end > len(self.data):
                raise _Unusual("file shorter than it was")
        return self.data


def _fast_read(fh: Any, size: int) -> tuple[Any, int, bytes, dict[int, Any]] | None:
    """(dataset of the SCAN_TAGS elements, offset of the pixel data element, its first 12 bytes,
    the raw elements by int tag), or None where pydicom should read the file."""
    if not _default_decoding() or pydicom.config.use_DS_numpy or pydicom.config.use_IS_numpy:
        return None
    try:
        return _walk(_Buffer(fh, size))
    except Exception:  # _Unusual, or whatever a damaged file makes of the walk: pydicom decides
        return None


def _walk(buf: _Buffer) -> tuple[Any, int, bytes, dict[int, Any]]:
    data = buf.need(132)
    if data[128:132] != b"DICM":
        raise _Unusual("no preamble")
    meta: dict[int, RawDataElement] = {}
    pos = 132
    while True:  # file meta: explicit VR little endian, group 0002
        data = buf.need(pos + 8)
        group, elem, vr, length = _EXPLICIT_HEAD.unpack_from(data, pos)
        if group != 0x0002:
            break
        start, length = _value_start(buf, pos, vr, length)
        data = buf.need(start + length)
        tag = group << 16 | elem
        meta[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr.decode(), length, data[start:start + length], start, False, True)
        pos = start + length
    if 0x00020010 not in meta:
        raise _Unusual("no transfer syntax")
    ts = str(convert_raw_data_element(meta[0x00020010]).value)
    implicit = _syntax(ts)
    if implicit is None:
        raise _Unusual("not little endian")
    first_vr = buf.need(pos + 8)[pos + 4:pos + 6]
    if implicit == (b"AA" <= first_vr <= b"ZZ"):
        raise _Unusual("dataset encoded otherwise than its transfer syntax says")  # pydicom's heuristic decides
    raw: dict[BaseTag, RawDataElement] = {}
    ints: dict[int, RawDataElement] = {}  # the same, by int tag
    encoding: Any = default_encoding
    size, data = buf.size, buf.data
    end = len(data)
    unpack = _IMPLICIT_HEAD.unpack_from if implicit else _EXPLICIT_HEAD.unpack_from
    unpack_long, vr_long, wanted = _UINT32.unpack_from, _VR_LONG.get, _WANTED
    while True:  # the hot loop: one element header per turn, values skipped unless wanted
        if pos + 12 > end:
            data = buf.need(min(pos + 12, size) if pos + 8 <= size else pos + 8)
            end = len(data)
        if implicit:
            group, elem, length = unpack(data, pos)
            start = pos + 8
        else:
            group, elem, vr_bytes, length = unpack(data, pos)
            long_vr = vr_long(vr_bytes)
            if long_vr:
                length = unpack_long(data, pos + 8)[0]
                start = pos + 12
            elif long_vr is None:
                raise _Unusual("not a VR")
            else:
                start = pos + 8
        tag = group << 16 | elem
        if length != 0xFFFFFFFF and tag < 0x7FE00008 and tag not in wanted:
            pos = start + length
            continue
        vr = _IMPLICIT_VR.get(tag) if implicit else vr_bytes.decode()
        if tag in _PIXEL_TAGS:
            data = buf.need(min(pos + 12, size))
            break
        if tag in _SQ_TAGS or (length == 0xFFFFFFFF and tag in _WANTED):
            raise _Unusual("a needed sequence")
        if length == 0xFFFFFFFF:
            if not implicit and vr not in ("SQ", "UN"):
                raise _Unusual("undefined length value")
            pos = _skip_sequence(buf, start, implicit)
            data = buf.data
            end = len(data)
            continue
        if tag in wanted:
            data = buf.need(start + length)
            end = len(data)
            value = data[start:start + length] if length else empty_value_for_VR(vr, raw=True)
            element = RawDataElement(BaseTag(tag), vr, length, value, start, implicit, True)  # type: ignore[arg-type]
            raw[element.tag] = ints[tag] = element
            if tag == 0x00080005:
                encoding = convert_encodings(convert_raw_data_element(element).value)
        pos = start + length
    return _Read(raw, meta, implicit, encoding), pos, data[pos:pos + 12], ints


class _Read:
    """What the fast reader read, standing in for the pydicom Dataset `dcmread` would have made:
    its encoding, the file meta values the scan asks for, and, for the few elements that need
    pydicom's full decoding (implicit VR private ones, UN), the Dataset itself, made when first
    asked (most files never need it; making one per file was a tenth of the header pass)."""

    def __init__(self, raw: dict[Any, RawDataElement], meta: dict[Any, RawDataElement], implicit: bool,
                 encoding: Any):
        self._raw = raw
        self._dataset: Any = None
        self.original_encoding = (implicit, True)
        self.original_character_set = encoding
        self.file_meta = {keyword_for_tag(tag): convert_raw_data_element(elem).value for tag, elem in meta.items()
                          if tag in (0x00020002, 0x00020010)}

    def __getitem__(self, tag: Any) -> Any:
        if self._dataset is None:
            self._dataset = Dataset(self._raw, parent_encoding=default_encoding)  # type: ignore[arg-type]
            self._dataset.set_original_encoding(self.original_encoding[0], True, self.original_character_set)
        return self._dataset[tag]

    def keys(self) -> Any:
        return self._raw.keys()


def _value_start(buf: _Buffer, pos: int, vr: bytes, length: int) -> tuple[int, int]:
    """Where an explicit VR element's value starts, and its length (32-bit for long VRs)."""
    long_vr = _VR_LONG.get(vr)
    if long_vr is None:
        raise _Unusual("not a VR")
    if long_vr:
        return pos + 12, _UINT32.unpack_from(buf.need(pos + 12), pos + 8)[0]
    return pos + 8, length


def _skip_sequence(buf: _Buffer, pos: int, implicit: bool, depth: int = 0) -> int:
    """Offset after an undefined-length sequence that starts (its first item) at `pos`."""
    if depth > 16:
        raise _Unusual("sequences nested too deep")
    while True:
        tag, length = struct.unpack_from("<LL", buf.need(pos + 8), pos)
        pos += 8
        if tag == 0xE0DDFFFE:  # sequence delimitation item
            return pos
        if tag != 0xE000FFFE:  # not an item
            raise _Unusual("not an item")
        if length != 0xFFFFFFFF:
            pos += length
            continue
        while True:  # an undefined-length item: elements up to the item delimiter
            data = buf.need(pos + 8)
            if implicit:
                group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
                start, vr = pos + 8, None
            else:
                group, elem, vr_bytes, length = _EXPLICIT_HEAD.unpack_from(data, pos)
                if (group, elem) == (0xFFFE, 0xE00D):
                    start, length, vr = pos + 8, 0, None
                else:
                    start, length = _value_start(buf, pos, vr_bytes, length)
                    vr = vr_bytes
            if (group, elem) == (0xFFFE, 0xE00D):
                pos += 8
                break
            if length == 0xFFFFFFFF:
                if vr not in (None, b"SQ", b"UN"):
                    raise _Unusual("undefined length value")
                pos = _skip_sequence(buf, start, implicit, depth + 1)
            else:
                pos = start + length


def header_of(path: str | os.PathLike[str]) -> Header:
    """The header of one file as the scan reads it (FileSkip for a file it would not use)."""
    with quiet():
        return read_header(str(path))[0]


def native_pixels(ds: Header, ts: Any, offset: int, length: int) -> NativePixels | None:
    """Location and decoding of a single uncompressed little-endian frame, else None (the pydicom
    path then reads it)."""
    if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, None) or length == 0xFFFFFFFF:
        return None
    rows, cols = as_int(get(ds, "Rows")), as_int(get(ds, "Columns"))
    bits = as_int(get(ds, "BitsAllocated"))
    frames = as_int(get(ds, "NumberOfFrames")) or 1
    if not rows or not cols or bits not in (8, 16, 32) or frames != 1 or (as_int(get(ds, "SamplesPerPixel")) or 1) != 1:
        return None
    if length < rows * cols * bits // 8:
        return None
    signed = as_int(get(ds, "PixelRepresentation")) == 1
    slope, intercept = as_float(get(ds, "RescaleSlope")), as_float(get(ds, "RescaleIntercept"))
    photometric = str(get(ds, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    return NativePixels(
        offset=offset,
        dtype=f"<{'i' if signed else 'u'}{bits // 8}",
        bits_stored=as_int(get(ds, "BitsStored")) or bits,
        slope=1.0 if slope is None else slope,
        intercept=0.0 if intercept is None else intercept,
        monochrome1=photometric == "MONOCHROME1",
    )


def _encapsulated_items(fh: Any, pos: int, tail: bytes, size: int) -> int | None:
    """For undefined-length (compressed) pixel data: walk the fragment items to the delimiter and
    count them (the basic offset table is the first; each frame takes one or more of the rest);
    0 when the walk does not end well (cut or damaged), None when it is no such pixel data."""
    if len(tail) < 12 or tail[:4] != b"\xe0\x7f\x10\x00" or tail[8:12] != b"\xff\xff\xff\xff":
        return None  # not little-endian encapsulated pixel data: checked elsewhere
    offset = pos + 12
    for count in range(1_000_000):
        fh.seek(offset)
        head = fh.read(8)
        if len(head) < 8:
            return 0
        group, elem, length = struct.unpack("<HHL", head)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return count
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            return 0
        offset += 8 + length
        if offset > size:
            return 0
    return 0


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
