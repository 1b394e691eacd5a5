"""Synthetic MR DICOM files for tests (written with pydicom, no real data, no downloads).

Every file carries fake PHI (see `PHI`) so tests of later stages can assert that none of it reaches
their outputs: grep output files for the strings in `PHI_VALUES`.

Main entry points:

* `mr_dataset(pixels, ...)`  -> an in-memory MR Image Storage `FileDataset` (one slice).
* `write_mr(path, pixels, ...)` -> one slice written to `path` (optionally compressed).
* `write_series(dir, volume, orientation=..., ...)` -> one file per slice of `volume`
  (slices along the orientation normal), filenames shuffled so order must come from positions.
* `write_enhanced_mr(path, frames, positions=..., ...)` -> one Enhanced MR multi-frame file.
* `write_non_image(path, kind)` -> DICOMDIR, SR, secondary capture, presentation state, ... files.
* `truncate(path, keep)` -> cut a file short (a damaged file).
* `csa2(elements)` -> a Siemens CSA2 header blob, for the (0029,1010) private element.

Orientations are given as ImageOrientationPatient (row direction cosines, then column direction
cosines, LPS) or by name: `ORIENTATIONS["axial" | "coronal" | "sagittal"]` are the canonical display
orientations (stored array == canonical array for these).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    UID,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
    generate_uid,
)

# Fake PHI written into every file unless overridden (keyword -> value).
PHI: dict[str, str] = {
    "PatientName": "DOE^JANE",
    "PatientID": "PHI-12345",
    "PatientBirthDate": "19700101",
    "StudyDate": "20200102",
    "SeriesDate": "20200102",
    "AcquisitionDate": "20200102",
    "ContentDate": "20200102",
    "InstitutionName": "PHI GENERAL HOSPITAL",
    "ReferringPhysicianName": "DR^PHI^WHO",
    "AccessionNumber": "PHIACC0042",
    "StudyDescription": "PHI STUDY DESCRIPTION",
    "SeriesDescription": "PHI SERIES T2 AX",
    "StudyID": "PHISTUDY7",
}
# Strings that must never appear in any output derived from factory files (UIDs are added per file).
PHI_VALUES: tuple[str, ...] = (
    "DOE^JANE", "DOE", "JANE", "PHI-12345", "19700101", "20200102", "PHI GENERAL HOSPITAL",
    "DR^PHI^WHO", "PHIACC0042", "PHI STUDY DESCRIPTION", "PHI SERIES T2 AX", "PHISTUDY7",
)
# All factory UIDs start with this root, so outputs can be checked for leaked UIDs too.
UID_ROOT = "1.2.826.0.1.3680043.10.999."

ORIENTATIONS: dict[str, tuple[float, ...]] = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # rows A->P, columns R->L; normal +z (superior)
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),  # rows S->I, columns R->L; normal +y (posterior)
    "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),  # rows S->I, columns A->P; normal -x (right)
}

TRANSFER_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
    "jpeg_lossless": JPEGLosslessSV1,  # written with python-gdcm (pydicom has no encoder for it)
}


def new_uid() -> str:
    """A fresh UID under the factory's root."""
    return generate_uid(prefix=UID_ROOT)


def iop_of(value: str | Sequence[float]) -> tuple[float, ...]:
    """ImageOrientationPatient from a name in ORIENTATIONS or six numbers."""
    iop = ORIENTATIONS[value] if isinstance(value, str) else tuple(float(v) for v in value)
    if len(iop) != 6:
        raise ValueError("orientation needs 6 direction cosines")
    return iop


orientation = iop_of  # alias


def slice_normal(iop: Sequence[float]) -> np.ndarray:
    """Stored slice normal: row direction x column direction."""
    return np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))


def _pixel_module(ds: Dataset, pixels: np.ndarray, photometric: str) -> None:
    """Set the image pixel module from an integer array (rows, cols) or (frames, rows, cols)."""
    arr = np.asarray(pixels)
    if arr.dtype.kind == "f" or arr.dtype == np.int32 or arr.dtype == np.int64:
        arr = arr.astype(np.int16) if arr.min() < 0 else arr.astype(np.uint16)
    if arr.dtype == np.uint8:
        bits = 8
    elif arr.dtype in (np.uint16, np.int16):
        bits = 16
    else:
        raise TypeError(f"unsupported pixel dtype {arr.dtype}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    if arr.ndim == 3:
        ds.NumberOfFrames = int(arr.shape[0])
    ds.PixelData = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()


def _file_dataset(sop_class: str, sop_uid: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("synthetic.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(sop_uid)
    return ds


def _apply_phi(ds: Dataset, phi: dict[str, str] | None) -> None:
    values = dict(PHI)
    if phi:
        values.update(phi)
    for keyword, value in values.items():
        if value is not None:
            setattr(ds, keyword, value)


def mr_dataset(
    pixels: np.ndarray,
    *,
    sop_class: str = MRImageStorage,
    iop: str | Sequence[float] = "axial",
    ipp: Sequence[float] | None = (0.0, 0.0, 0.0),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    slice_thickness: float | None = 1.0,
    spacing_between_slices: float | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    sop_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int | None = 1,
    instance_number: int | None = 1,
    acquisition_number: int | None = 1,
    echo_number: int | None = 1,
    echo_time: float | None = 10.0,
    repetition_time: float | None = 500.0,
    flip_angle: float | None = 90.0,
    field_strength: float | None = 3.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    photometric: str = "MONOCHROME2",
    rescale_slope: float | None = None,
    rescale_intercept: float | None = None,
    complex_component: str | None = None,
    temporal_position: int | None = None,
    trigger_time: float | None = None,
    manufacturer: str = "ACME",
    phi: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> FileDataset:
    """One MR Image Storage slice (explicit VR little endian) with fake PHI.

    `pixels` is an integer array (rows, cols): uint8, uint16 or int16 (floats are cast). `ipp=None`
    or `iop=None`-like omissions leave the element out. `extra` sets any further keywords.
    """
    ds = _file_dataset(sop_class, sop_uid or new_uid())
    _apply_phi(ds, phi)
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.ImageType = list(image_type)
    ds.StudyInstanceUID = study_uid or new_uid()
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.FrameOfReferenceUID = frame_of_reference_uid or new_uid()
    ds.StudyTime = "101010"
    ds.PatientSex = "F"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.MRAcquisitionType = "2D"
    optional = {
        "SeriesNumber": series_number,
        "InstanceNumber": instance_number,
        "AcquisitionNumber": acquisition_number,
        "EchoNumbers": echo_number,
        "EchoTime": echo_time,
        "RepetitionTime": repetition_time,
        "FlipAngle": flip_angle,
        "MagneticFieldStrength": field_strength,
        "SliceThickness": slice_thickness,
        "SpacingBetweenSlices": spacing_between_slices,
        "RescaleSlope": rescale_slope,
        "RescaleIntercept": rescale_intercept,
        "ComplexImageComponent": complex_component,
        "TemporalPositionIdentifier": temporal_position,
        "TriggerTime": trigger_time,
    }
    for keyword, value in optional.items():
        if value is not None:
            setattr(ds, keyword, value)
    if rescale_slope is not None or rescale_intercept is not None:
        ds.RescaleType = "US"
    if iop is not None:
        ds.ImageOrientationPatient = [float(v) for v in iop_of(iop)]
    if ipp is not None:
        ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    _pixel_module(ds, pixels, photometric)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def save(ds: FileDataset, path: str | Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write `ds` to `path`, compressing with pydicom's encoders for RLE / JPEG-LS / JPEG 2000.

    `transfer_syntax` is a UID or a key of TRANSFER_SYNTAXES. The JPEG 2000 encoder (openjpeg) needs
    images of at least 32 x 32 pixels; JPEG Lossless is encoded with python-gdcm.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = UID(TRANSFER_SYNTAXES.get(transfer_syntax, transfer_syntax))
    if ts == JPEGLosslessSV1:
        ds.save_as(path, enforce_file_format=True)
        _gdcm_recode(path, ts)
        return path
    if ts != ExplicitVRLittleEndian:
        ds.compress(ts, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def _gdcm_recode(path: Path, ts: str) -> None:
    """Re-encode a written file in place with python-gdcm (used for JPEG Lossless)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise RuntimeError(f"gdcm could not read {path}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(ts))))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"gdcm could not encode {path} as {ts}")
    writer = gdcm.ImageWriter()
    tmp = path.with_name(path.name + ".tmp")
    writer.SetFileName(str(tmp))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm could not write {tmp}")
    del reader, writer, change
    tmp.replace(path)


def write_mr(path: str | Path, pixels: np.ndarray, *, transfer_syntax: str = ExplicitVRLittleEndian,
             **kwargs: Any) -> Path:
    """One MR slice file; keyword arguments as for `mr_dataset`."""
    return save(mr_dataset(pixels, **kwargs), path, transfer_syntax)


def write_series(
    directory: str | Path,
    volume: np.ndarray,
    *,
    orientation: str | Sequence[float] = "axial",
    origin: Sequence[float] = (-10.0, -20.0, 30.0),
    spacing: Sequence[float] = (2.0, 1.0, 1.0),
    series_uid: str | None = None,
    study_uid: str | None = None,
    shuffle: bool = True,
    scramble_instances: bool = True,
    seed: int = 0,
    prefix: str = "IM",
    transfer_syntax: str = ExplicitVRLittleEndian,
    **kwargs: Any,
) -> list[Path]:
    """Write `volume` (slices, rows, cols) as one file per slice; return the paths in volume order.

    Slice i lies at `origin + i * spacing[0] * normal` (normal = row x column direction of the
    orientation); `spacing[1:]` is PixelSpacing (row, column). With `shuffle` the file names are a
    random permutation; with `scramble_instances` InstanceNumbers are too, so only positions give the
    order. Further keyword arguments go to `mr_dataset` (echo_time, image_type, ...).
    """
    directory = Path(directory)
    iop = iop_of(orientation)
    normal = slice_normal(iop)
    rng = random.Random(seed)
    n = volume.shape[0]
    names = list(range(n))
    instances = list(range(1, n + 1))
    if shuffle:
        rng.shuffle(names)
    if scramble_instances:
        rng.shuffle(instances)
    series_uid = series_uid or new_uid()
    study_uid = study_uid or new_uid()
    frame_of_reference = kwargs.pop("frame_of_reference_uid", None) or new_uid()
    paths = []
    for i in range(n):
        ipp = np.asarray(origin, float) + i * float(spacing[0]) * normal
        ds = mr_dataset(
            volume[i], iop=iop, ipp=tuple(ipp), pixel_spacing=(spacing[1], spacing[2]),
            series_uid=series_uid, study_uid=study_uid, frame_of_reference_uid=frame_of_reference,
            instance_number=instances[i], **{"slice_thickness": float(spacing[0]), **kwargs},
        )
        paths.append(save(ds, directory / f"{prefix}{names[i]:04d}.dcm", transfer_syntax))
    return paths


def _item(**elements: Any) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        if value is not None:
            setattr(item, keyword, value)
    return item


def write_enhanced_mr(
    path: str | Path,
    frames: np.ndarray,
    *,
    positions: Sequence[Sequence[float]],
    iop: str | Sequence[float] = "axial",
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    slice_thickness: float = 1.0,
    rescale: Sequence[tuple[float, float]] | tuple[float, float] | None = None,
    frame_types: Sequence[Sequence[str]] | None = None,
    complex_components: Sequence[str] | None = None,
    echo_times: Sequence[float] | float | None = 10.0,
    temporal_positions: Sequence[int] | None = None,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "NONE"),
    series_uid: str | None = None,
    series_number: int = 1,
    photometric: str = "MONOCHROME2",
    sop_class: str = EnhancedMRImageStorage,
    phi: dict[str, str] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Path:
    """One Enhanced MR multi-frame file; frame f lies at positions[f].

    Per-frame functional groups carry PlanePosition, PixelValueTransformation (`rescale`: one
    (slope, intercept) per frame, or a single pair written to the shared groups), MRImageFrameType
    (`frame_types`, `complex_components`), MREcho (`echo_times`) and FrameContent
    (`temporal_positions`); orientation and pixel measures are shared.
    """
    frames = np.asarray(frames)
    n = frames.shape[0]
    if len(positions) != n:
        raise ValueError("one position per frame")
    ds = _file_dataset(sop_class, new_uid())
    _apply_phi(ds, phi)
    ds.Modality = "MR"
    ds.Manufacturer = "ACME"
    ds.ImageType = list(image_type)
    ds.StudyInstanceUID = new_uid()
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.FrameOfReferenceUID = new_uid()
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.MagneticFieldStrength = 1.5
    ds.ContentTime = "101010"
    ds.AcquisitionContextSequence = DicomSequence([])
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"

    shared = _item(
        PlaneOrientationSequence=DicomSequence([_item(ImageOrientationPatient=list(iop_of(iop)))]),
        PixelMeasuresSequence=DicomSequence([_item(PixelSpacing=list(pixel_spacing),
                                                   SliceThickness=slice_thickness)]),
        MRTimingAndRelatedParametersSequence=DicomSequence([_item(RepetitionTime=800.0, FlipAngle=15.0)]),
    )
    per_frame_rescale = rescale is not None and len(rescale) == n and not isinstance(rescale[0], (int, float))
    if rescale is not None and not per_frame_rescale:
        slope, intercept = rescale  # type: ignore[misc]
        shared.PixelValueTransformationSequence = DicomSequence(
            [_item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")])
    if isinstance(echo_times, (int, float)):
        shared.MREchoSequence = DicomSequence([_item(EffectiveEchoTime=float(echo_times))])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    items = []
    for f in range(n):
        item = _item(
            PlanePositionSequence=DicomSequence([_item(ImagePositionPatient=[float(v) for v in positions[f]])]),
            FrameContentSequence=DicomSequence([_item(
                InStackPositionNumber=f + 1,
                TemporalPositionIndex=None if temporal_positions is None else int(temporal_positions[f]),
                StackID="1",
            )]),
            MRImageFrameTypeSequence=DicomSequence([_item(
                FrameType=list(frame_types[f]) if frame_types is not None else list(image_type),
                ComplexImageComponent=complex_components[f] if complex_components is not None else "MAGNITUDE",
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
            )]),
        )
        if per_frame_rescale:
            slope, intercept = rescale[f]  # type: ignore[index]
            item.PixelValueTransformationSequence = DicomSequence(
                [_item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")])
        if echo_times is not None and not isinstance(echo_times, (int, float)):
            item.MREchoSequence = DicomSequence([_item(EffectiveEchoTime=float(echo_times[f]))])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    _pixel_module(ds, frames, photometric)
    ds.NumberOfFrames = n
    return save(ds, path, transfer_syntax)


_NON_IMAGE_SOP = {
    "dicomdir": "1.2.840.10008.1.3.10",
    "sr": "1.2.840.10008.5.1.4.1.1.88.22",
    "key_object": "1.2.840.10008.5.1.4.1.1.88.59",
    "presentation_state": "1.2.840.10008.5.1.4.1.1.11.1",
    "secondary_capture": "1.2.840.10008.5.1.4.1.1.7",
    "raw_data": "1.2.840.10008.5.1.4.1.1.66",
    "spectroscopy": "1.2.840.10008.5.1.4.1.1.4.2",
    "ct": "1.2.840.10008.5.1.4.1.1.2",
    "no_pixels": MRImageStorage,
}


def write_non_image(path: str | Path, kind: str) -> Path:
    """A file a reader must skip: 'dicomdir', 'sr', 'key_object', 'presentation_state',
    'secondary_capture' (with pixels), 'raw_data', 'spectroscopy', 'ct' (with pixels) or
    'no_pixels' (an MR Image Storage header without PixelData)."""
    sop = _NON_IMAGE_SOP[kind]
    if kind in ("secondary_capture", "ct", "no_pixels"):
        ds = mr_dataset(np.arange(64, dtype=np.uint16).reshape(8, 8), sop_class=sop)
        if kind == "no_pixels":  # a complete header-only file
            del ds.PixelData
        if kind == "ct":
            ds.Modality = "CT"
        if kind == "secondary_capture":
            ds.Modality = "OT"
            ds.ConversionType = "WSD"
        return save(ds, path)
    ds = _file_dataset(sop, new_uid())
    _apply_phi(ds, None)
    if kind == "dicomdir":
        del ds.SOPClassUID
        del ds.SOPInstanceUID
        ds.FileSetID = "SYNTH"
        ds.DirectoryRecordSequence = DicomSequence([])
    else:
        ds.Modality = {"sr": "SR", "key_object": "KO", "presentation_state": "PR"}.get(kind, "MR")
        ds.SeriesInstanceUID = new_uid()
        ds.StudyInstanceUID = new_uid()
    return save(ds, path)


def csa2(elements: dict[str, list[str]]) -> bytes:
    """A Siemens CSA2 header ('SV10') holding `elements`, laid out as scanners write it."""
    out = [b"SV10", b"\4\3\2\1", struct.pack("<2I", len(elements), 77)]
    for name, items in elements.items():
        out.append(struct.pack("<64si4s3i", name.encode(), len(items), b"FD", 4, len(items), 77))
        for item in items:
            value = item.encode() + b"\0"
            out.append(struct.pack("<4i", len(value), len(value), 77, len(value)) + value + b"\0" * (-len(value) % 4))
    return b"".join(out)


def truncate(path: str | Path, keep: int | float, out: str | Path | None = None) -> Path:
    """Cut a file to `keep` bytes (int) or that fraction of its size (float); in place or to `out`."""
    path = Path(path)
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else int(keep)
    target = Path(out) if out is not None else path
    target.write_bytes(data[:n])
    return target
