"""Loading a scanned volume's pixels: float32, rescaled, in the canonical orientation.

Uncompressed little-endian images are read with one `numpy.fromfile` at the offset the scan found
(`NativePixels`), decoded exactly as pydicom decodes them (masked to BitsStored, sign-extended,
rescaled); everything else goes through pydicom's decoders, and a missing codec names the extra
that brings it. Every failure is a `SourceError` that names the file, never a traceback.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pydicom
from pydicom.uid import UID

from ..base import NativePixels, SourceError, VolumeInfo
from ..orientation import IDENTITY, InPlane, canonical_inplane
from .header import FileSkip, as_float, get, is_gzip, open_dicom, quiet
from .records import fg_item, shared_groups

__all__ = ["CODECS_FIX", "decoded", "load_dicom"]

CODECS_FIX = "install the codecs extra: pip install 'kspacify[codecs]'"


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
        with quiet():
            fh, _ = open_dicom(path)
            with fh:
                ds = pydicom.dcmread(fh)
    except FileSkip as skip:
        raise SourceError(f"{path}: {skip.reason}") from None
    except Exception as exc:
        raise SourceError(f"{path}: cannot read DICOM file ({type(exc).__name__}: {exc})") from None
    file_meta = getattr(ds, "file_meta", None)
    ts = UID(str(get(file_meta, "TransferSyntaxUID") or "1.2.840.10008.1.2"))
    if "PixelData" not in ds:
        raise SourceError(f"{path}: pixel data missing or truncated")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise SourceError(f"{path}: transfer syntax '{ts.name}' ({ts}) is not supported") from None
    if not decoder.is_available:
        raise _codec_error(path, ts)

    shared = shared_groups(ds)
    per_frame = get(ds, "PerFrameFunctionalGroupsSequence")
    photometric = str(get(ds, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    arrays, scales = [], []
    try:
        with quiet():
            for frame in frames:
                if frame is None:
                    arr = pixel_array(ds)
                    if arr.ndim == 3:  # a single frame written with NumberOfFrames = 1
                        arr = arr[0]
                    slope, intercept = as_float(get(ds, "RescaleSlope")), as_float(get(ds, "RescaleIntercept"))
                else:
                    arr = pixel_array(ds, index=frame)
                    pvt = fg_item(ds, per_frame, shared, frame, "PixelValueTransformationSequence")
                    slope = as_float(get(pvt, "RescaleSlope"))
                    intercept = as_float(get(pvt, "RescaleIntercept"))
                    if slope is None and intercept is None:
                        slope, intercept = as_float(get(ds, "RescaleSlope")), as_float(get(ds, "RescaleIntercept"))
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


def decoded(path: str) -> np.ndarray | str:
    """Every stored value of the file's pixel data, rescaled (float64; all frames), or the reason
    it cannot be had (a damaged file, a stream that does not decode, a missing codec): what tells
    apart copies of one image that are not byte for byte the same (`scan.resolve_copies`)."""
    from pydicom.pixels import pixel_array

    try:
        with quiet():
            fh, _ = open_dicom(path)
            with fh:
                ds = pydicom.dcmread(fh)
            ts = UID(str(get(getattr(ds, "file_meta", None), "TransferSyntaxUID") or "1.2.840.10008.1.2"))
            try:
                values = np.asarray(pixel_array(ds), dtype=np.float64)
            except Exception as exc:
                text = str(exc).splitlines()[0].rstrip(": ") if str(exc) else ""
                return f"cannot decode pixel data ({ts.name}): {type(exc).__name__}: {text}"[:300]
    except FileSkip as skip:
        return skip.reason
    except Exception as exc:
        return f"cannot read DICOM file ({type(exc).__name__})"
    slope, intercept = as_float(get(ds, "RescaleSlope")), as_float(get(ds, "RescaleIntercept"))
    return values * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)


def _read_native(path: str, native: NativePixels, shape: tuple[int, int]) -> np.ndarray:
    """One uncompressed frame straight from the file, decoded as pydicom does it: values masked to
    BitsStored (sign-extended when signed), then rescaled."""
    dtype = np.dtype(native.dtype)
    count = shape[0] * shape[1]
    try:
        if is_gzip(path):  # the offset is in the inflated stream
            fh, _ = open_dicom(path)
            data = fh.getvalue()[native.offset:native.offset + count * dtype.itemsize]
            values = np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize).copy()
        else:
            with open(path, "rb") as fh:
                fh.seek(native.offset)
                values = np.fromfile(fh, dtype=dtype, count=count)
    except FileSkip as skip:
        raise SourceError(f"{path}: {skip.reason}") from None
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
        return [_read_native(path, native, shape) for native in natives], natives[0].monochrome1  # type: ignore[arg-type, union-attr]
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


def _tile(mosaic: np.ndarray, k: int, down: int, across: int) -> np.ndarray:
    """Tile `k` (row-major) of a mosaic of `down` x `across` tiles."""
    rows, cols = mosaic.shape[0] // down, mosaic.shape[1] // across
    r, c = divmod(k, across)
    return mosaic[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols]


def load_dicom(info: VolumeInfo) -> np.ndarray:
    """Pixels of a scanned volume: float32 (slices, rows, cols), rescaled, canonical orientation."""
    inplane = _inplane_of(info)
    n, rows, cols = info.shape
    stored = (cols, rows) if inplane.transpose else (rows, cols)
    grid = int(info.meta.get("mosaic_grid") or 0)  # tiles across (and down, unless mosaic_grid_rows says)
    down = int(info.meta.get("mosaic_grid_rows") or grid)
    out = np.empty((n, rows, cols), dtype=np.float32)
    by_file: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for i, ref in enumerate(info.slices):
        by_file[ref.path].append((i, ref.frame))
    inverted: list[int] = []
    for path, items in by_file.items():
        if grid:  # a mosaic: its one stored image holds slice k as tile k
            (mosaic,), mono1 = _file_images(path, [None], [info.slices[items[0][0]].native],
                                            (stored[0] * down, stored[1] * grid))
            images = [_tile(mosaic, k, down, grid) for _, k in items]  # type: ignore[arg-type]
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
