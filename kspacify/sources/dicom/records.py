"""What the scan reads from one file: a `Frame` per stored image (classic) or frame (Enhanced MR),
and the `Image` record it keeps of each slice for ordering and loading.

One record type for all layouts, so grouping never needs to know which one a file used: Enhanced
MR values come from the per-frame functional groups first, then the shared ones, then the top
level. A mosaic (slices tiled in one image) is one Frame whose `tiles` give each slice's index and
position (`vendor.mosaic_tiles`): its slices share every other value, so they are keyed once, not
per tile (a series of 300 fMRI mosaics has 10^4 tiles). Also here: which SOP classes are MR
images, and what an image is (localizer, phase/real/imaginary component).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID

from .header import FileSkip, Header, as_float, as_int, as_strings, as_vector, get
from .vendor import mosaic_tiles, philips_diffusion, uih_tiles

__all__ = ["ENHANCED_MR", "FileFrames", "Frame", "Image", "KEEP_SOP", "component", "is_localizer", "is_uid",
           "read_frames", "sop_skip_reason"]

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.4"
KEEP_SOP = {
    MR_IMAGE: "MR Image Storage",
    ENHANCED_MR: "Enhanced MR Image Storage",
    LEGACY_ENHANCED_MR: "Legacy Converted Enhanced MR Image Storage",
}
DICOMDIR_SOP = "1.2.840.10008.1.3.10"
# (UID or UID family, what to call it); a family matches the UID itself and anything under "UID."
_SKIP_SOP = (
    (DICOMDIR_SOP, "DICOMDIR (media directory, not an image)"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "key object selection document"),
    ("1.2.840.10008.5.1.4.1.1.88", "structured report"),
    ("1.2.840.10008.5.1.4.1.1.11", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data"),
    ("1.2.840.10008.5.1.4.1.1.4.2", "MR spectroscopy"),
)

_COMPONENT_TOKENS = {"P": "phase", "PHASE": "phase", "PHASE MAP": "phase", "R": "real", "REAL": "real",
                     "I": "imaginary", "IMAGINARY": "imaginary"}
_COMPONENT_PREFIX = {"P_": "phase", "R_": "real", "I_": "imaginary"}  # Philips, e.g. P_FFE, R_SE
_COMPLEX_COMPONENT = {"PHASE": "phase", "REAL": "real", "IMAGINARY": "imaginary", "MIXED": "mixed"}
_LOCALIZER_WORDS = {"localizer", "localiser", "scout", "survey", "tripilot", "3plane", "aascout"}


@dataclass(frozen=True, slots=True)
class Frame:
    """Everything the scan reads of one stored image, mosaic tile or Enhanced MR frame."""

    frame: int | None  # frame (Enhanced MR) or tile (mosaic) index; None for a classic image
    image_type: tuple[str, ...]
    complex_component: Any
    position: tuple[float, ...] | None  # ImagePositionPatient of the first pixel
    orientation: tuple[float, ...] | None  # ImageOrientationPatient
    pixel_spacing: tuple[float, ...] | None
    slice_thickness: float | None
    spacing_between: float | None
    echo_number: int | None
    echo_time: float | None
    temporal_position: int | None
    b_value: float | None
    b_vector: tuple[float, ...] | None
    stack: int | None  # Enhanced MR StackID
    instance: int | None  # InstanceNumber, or InStackPositionNumber (Enhanced MR)
    trigger: float | None
    timing: dict[str, float | None]  # repetition/inversion time, flip angle: in the order meta lists them
    tiles: tuple[tuple[int, tuple[float, ...] | None], ...] | None = None  # mosaic: (tile, position) per slice
    # a diffusion-weighted (b > 0) image: 'isotropic' (a trace, often derived) or 'directional'
    diffusion: str | None = None
    # what names the sequence, as the header holds it (`acquisition.sequence_family` reads it):
    # ScanningSequence, SequenceVariant, and Enhanced MR's EchoPulseSequence, EchoPlanarPulseSequence
    # and InversionRecovery
    sequence: tuple[Any, ...] = (None, None, None, None, None)


@dataclass(frozen=True, slots=True)
class Image:
    """What scan keeps per image (file or frame) once grouped: where it is and how to order it."""

    path: str
    frame: int | None
    position: tuple[float, ...] | None
    instance: int | None
    acquisition: int | None
    trigger: float | None
    native: Any = None  # NativePixels where the values can be read straight from the file


@dataclass(frozen=True, slots=True)
class FileFrames:
    """A file's frames and the facts all of them share."""

    common: dict[str, Any]  # meta every volume of this file carries
    series_uid: str
    series_number: int | None
    descriptions: tuple[Any, Any]  # SeriesDescription, ProtocolName: read to recognise localizers only
    acquisition: int | None
    rows: int  # of one slice (a mosaic tile)
    cols: int
    enhanced: bool
    frames: list[Frame]
    # read to pair phase images with their magnitudes only: never written anywhere
    study_uid: str = ""
    frame_of_reference: str | None = None


_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


def is_uid(value: str) -> bool:
    """A DICOM UID: dot-separated numbers without leading zeros, at most 64 characters."""
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def sop_skip_reason(uid: str) -> str:
    for family, what in _SKIP_SOP:
        if uid == family or uid.startswith(family + "."):
            return what
    name = UID(uid).name if uid else ""
    if name and name != uid:
        return f"not an MR image ({name})"
    return f"unsupported SOP class {uid}" if uid else "no SOP class (not an image)"


def component(image_type: tuple[str, ...], complex_component: str | None) -> str | None:
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


def is_localizer(image_type: tuple[str, ...], descriptions: Iterable[Any]) -> bool:
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


def fg_item(ds: Any, per_frame: Any, shared: Any, frame: int, keyword: str) -> Any:
    """First item of functional-group macro `keyword` for `frame` (per-frame first, then shared)."""
    for holder in (per_frame[frame] if per_frame is not None and frame < len(per_frame) else None, shared):
        seq = get(holder, keyword)
        if seq:
            try:
                return seq[0]
            except Exception:
                continue
    return None


def shared_groups(ds: Any) -> Any:
    seq = get(ds, "SharedFunctionalGroupsSequence")
    try:
        return seq[0] if seq else None
    except Exception:
        return None


def _series_id(ds: Header) -> str:
    uid = get(ds, "SeriesInstanceUID")
    if uid:
        return str(uid)
    return f"no-series-uid|{get(ds, 'StudyInstanceUID') or ''}|{get(ds, 'SeriesNumber') or ''}"


def _common_meta(ds: Header, sop: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"modality": str(get(ds, "Modality") or "MR"), "sop_class": KEEP_SOP[sop]}
    ts = get(getattr(ds, "file_meta", None), "TransferSyntaxUID")
    if ts:
        meta["transfer_syntax"] = UID(str(ts)).name
    manufacturer = get(ds, "Manufacturer")
    if manufacturer:
        meta["manufacturer"] = str(manufacturer).strip()
    for key, keyword in (("magnetic_field_strength", "MagneticFieldStrength"),):
        value = as_float(get(ds, keyword))
        if value is not None:
            meta[key] = value
    acq_type = get(ds, "MRAcquisitionType")
    if acq_type:
        meta["mr_acquisition_type"] = str(acq_type).strip()
    return meta


def read_frames(ds: Header, sop: str) -> FileFrames:
    """The frames of an MR image file (`sop` one of KEEP_SOP); raises FileSkip for files that
    cannot be used (no matrix, colour, classic multi-frame, a mosaic that does not fit)."""
    common = _common_meta(ds, sop)
    top_type = as_strings(get(ds, "ImageType"))
    rows, cols = as_int(get(ds, "Rows")), as_int(get(ds, "Columns"))
    if not rows or not cols:
        raise FileSkip("no image matrix (Rows/Columns missing)", failed=True)
    spp = as_int(get(ds, "SamplesPerPixel")) or 1
    if spp != 1:
        raise FileSkip(f"colour images are not supported ({spp} samples per pixel)")
    instance = as_int(get(ds, "InstanceNumber"))
    common["photometric_interpretation"] = str(get(ds, "PhotometricInterpretation") or "MONOCHROME2")
    enhanced = sop in (ENHANCED_MR, LEGACY_ENHANCED_MR)
    if not enhanced:
        n_frames = as_int(get(ds, "NumberOfFrames")) or 1
        if n_frames > 1:
            raise FileSkip(f"multi-frame MR Image Storage ({n_frames} frames): the MR Image IOD holds one frame, and "
                           "kspacify does not guess how these frames are laid out: not converted", failed=True)
        tiles = None
        if "MOSAIC" in top_type:  # Siemens: slices tiled in the one image
            grid, positions = mosaic_tiles(ds, rows, cols)
            tiles = tuple(enumerate(positions))
            rows, cols = rows // grid, cols // grid
            common["mosaic_grid"] = grid
        elif "VFRAME" in top_type:  # UIH: the same idea, positions listed per slice
            down, across, positions = uih_tiles(ds, rows, cols)  # type: ignore[assignment]
            tiles = tuple(enumerate(positions))
            rows, cols = rows // down, cols // across
            common["mosaic_grid"] = across
            if down != across:
                common["mosaic_grid_rows"] = down
        frames = [_classic_frame(ds, top_type, instance, tiles)]
    else:
        frames = _enhanced_frames(ds, top_type)
    return FileFrames(common, _series_id(ds), as_int(get(ds, "SeriesNumber")),
                      (get(ds, "SeriesDescription"), get(ds, "ProtocolName")),
                      as_int(get(ds, "AcquisitionNumber")), rows, cols, enhanced, frames,
                      str(get(ds, "StudyInstanceUID") or ""), str(get(ds, "FrameOfReferenceUID") or "") or None)


def _classic_frame(ds: Header, top_type: tuple[str, ...], instance: int | None,
                   tiles: tuple[tuple[int, Any], ...] | None) -> Frame:
    """The one frame of a classic image file (a mosaic's tiles share it)."""
    return Frame(
        frame=None,
        image_type=top_type,
        complex_component=get(ds, "ComplexImageComponent"),
        position=as_vector(get(ds, "ImagePositionPatient"), 3),
        orientation=as_vector(get(ds, "ImageOrientationPatient"), 6),
        pixel_spacing=as_vector(get(ds, "PixelSpacing"), 2),
        slice_thickness=as_float(get(ds, "SliceThickness")),
        spacing_between=as_float(get(ds, "SpacingBetweenSlices")),
        echo_number=as_int(get(ds, "EchoNumbers")),
        echo_time=as_float(get(ds, "EchoTime")),
        temporal_position=as_int(get(ds, "TemporalPositionIdentifier")),
        b_value=as_float(get(ds, "DiffusionBValue")),
        b_vector=as_vector(get(ds, "DiffusionGradientOrientation"), 3),
        stack=None,
        instance=instance,
        trigger=as_float(get(ds, "TriggerTime")),
        timing={
            "repetition_time": as_float(get(ds, "RepetitionTime")),
            "inversion_time": as_float(get(ds, "InversionTime")),
            "flip_angle": as_float(get(ds, "FlipAngle")),
        },
        tiles=tiles,
        diffusion=_classic_diffusion(ds),
        sequence=(get(ds, "ScanningSequence"), get(ds, "SequenceVariant"), None, None, None),
    )


def diffusion_kind(directionality: Any, b_value: float | None) -> str | None:
    """'isotropic' or 'directional' for a b > 0 image whose DiffusionDirectionality says so."""
    kind = as_strings(directionality)
    if not kind or b_value is None or b_value <= 0:
        return None
    if kind[0] == "ISOTROPIC":
        return "isotropic"
    return "directional" if kind[0] in ("DIRECTIONAL", "BMATRIX") else None


def _classic_diffusion(ds: Header) -> str | None:
    """A classic image's diffusion kind: the public DiffusionDirectionality, else Philips' own
    direction letter ('I': isotropic; any other: a gradient direction) with its b-factor."""
    b_value = as_float(get(ds, "DiffusionBValue"))
    directionality = get(ds, "DiffusionDirectionality")
    if directionality is None:
        letter, philips_b = philips_diffusion(ds)
        if letter is None:
            return None
        directionality = "ISOTROPIC" if letter == "I" else "DIRECTIONAL"
        b_value = b_value if b_value is not None else philips_b
    return diffusion_kind(directionality, b_value)


def _check_frames(ds: Header, n_frames: int) -> None:
    """FileSkip when the pixel data cannot hold `n_frames` frames: native data by its length,
    encapsulated data by its fragments (each frame takes one at least, after the offset table)."""
    from kspacify.memory import human

    rows, cols = as_int(get(ds, "Rows")) or 1, as_int(get(ds, "Columns")) or 1
    frame_bytes = max(1, rows * cols * (as_int(get(ds, "SamplesPerPixel")) or 1) * (as_int(get(ds, "BitsAllocated")) or 16) // 8)
    length, items = getattr(ds, "pixel_length", None), getattr(ds, "pixel_items", None)
    if n_frames < 1:
        raise FileSkip(f"header claims {n_frames} frames", failed=True)
    if length is not None and n_frames * frame_bytes > length:
        raise FileSkip(f"header claims {n_frames} images of {rows} x {cols} pixels ({human(n_frames * frame_bytes)}) but "
                       f"its pixel data holds {human(length)}: damaged or edited header", failed=True)  # fmt: skip
    if items is not None and n_frames > max(items - 1, 1):
        raise FileSkip(f"header claims {n_frames} images of {rows} x {cols} pixels but its compressed pixel data holds "
                       f"{max(items - 1, 0)} fragment(s): damaged or edited header", failed=True)  # fmt: skip


def _enhanced_frames(ds: Header, top_type: tuple[str, ...]) -> list[Frame]:
    """One frame per Enhanced MR frame, from its functional groups (per-frame, shared, top level)."""
    shared = shared_groups(ds)
    per_frame = get(ds, "PerFrameFunctionalGroupsSequence")
    n_frames = as_int(get(ds, "NumberOfFrames")) or (len(per_frame) if per_frame else 1)
    _check_frames(ds, n_frames)  # before a record is made per frame
    top_sequence = (get(ds, "ScanningSequence"), get(ds, "SequenceVariant"), get(ds, "EchoPulseSequence"),
                    get(ds, "EchoPlanarPulseSequence"))
    frames = []
    for f in range(n_frames):
        def item(keyword: str, f: int = f) -> Any:
            return fg_item(ds, per_frame, shared, f, keyword)

        ftype = item("MRImageFrameTypeSequence")
        pos = item("PlanePositionSequence")
        ori = item("PlaneOrientationSequence")
        meas = item("PixelMeasuresSequence")
        echo = item("MREchoSequence")
        content = item("FrameContentSequence")
        diff = item("MRDiffusionSequence")
        timing = item("MRTimingAndRelatedParametersSequence")
        cardiac = item("CardiacSynchronizationSequence")
        modifier = item("MRModifierSequence")  # inversion recovery and its times
        # Legacy Converted Enhanced MR keeps some classic per-frame values here
        legacy = item("UnassignedPerFrameConvertedAttributesSequence")
        frame_type = as_strings(get(ftype, "FrameType")) or as_strings(get(legacy, "ImageType")) or top_type
        direction = None
        dseq = get(diff, "DiffusionGradientDirectionSequence")
        if dseq:
            direction = as_vector(get(dseq[0], "DiffusionGradientOrientation"), 3)
        temporal = as_int(get(content, "TemporalPositionIndex"))
        if temporal is None:
            temporal = as_int(get(ds, "TemporalPositionIdentifier"))
        frames.append(Frame(
            frame=f,
            image_type=frame_type,
            complex_component=get(ftype, "ComplexImageComponent") or get(ds, "ComplexImageComponent"),
            position=as_vector(get(pos, "ImagePositionPatient"), 3) or as_vector(get(ds, "ImagePositionPatient"), 3),
            orientation=as_vector(get(ori, "ImageOrientationPatient"), 6)
            or as_vector(get(ds, "ImageOrientationPatient"), 6),
            pixel_spacing=as_vector(get(meas, "PixelSpacing"), 2) or as_vector(get(ds, "PixelSpacing"), 2),
            slice_thickness=as_float(get(meas, "SliceThickness")) or as_float(get(ds, "SliceThickness")),
            spacing_between=as_float(get(meas, "SpacingBetweenSlices")) or as_float(get(ds, "SpacingBetweenSlices")),
            echo_number=as_int(get(legacy, "EchoNumbers") or get(ds, "EchoNumbers")) if echo is None else None,
            echo_time=as_float(get(echo, "EffectiveEchoTime")) if echo is not None
            else as_float(get(legacy, "EchoTime") or get(ds, "EchoTime")),
            temporal_position=temporal,
            b_value=as_float(get(diff, "DiffusionBValue")),
            b_vector=direction,
            diffusion=diffusion_kind(get(diff, "DiffusionDirectionality"), as_float(get(diff, "DiffusionBValue"))),
            stack=as_int(get(content, "StackID")),
            instance=as_int(get(content, "InStackPositionNumber")) or f + 1,
            trigger=as_float(get(cardiac, "NominalCardiacTriggerDelayTime") or get(legacy, "TriggerTime")),
            timing={
                "repetition_time": as_float(get(timing, "RepetitionTime")) or as_float(get(ds, "RepetitionTime")),
                "flip_angle": as_float(get(timing, "FlipAngle")) or as_float(get(ds, "FlipAngle")),
                "inversion_time": as_float(get(modifier, "InversionTimes")) or as_float(get(ds, "InversionTime")),
            },
            sequence=(*top_sequence, get(modifier, "InversionRecovery")),
        ))
    return frames
