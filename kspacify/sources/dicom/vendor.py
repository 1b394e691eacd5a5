"""Vendor private tags: GE's image-type flag, Siemens' CSA header and mosaics, UIH's VFRAME mosaics,
Philips' diffusion direction.

Private elements mean something only inside a block their creator reserved (vendors reserve blocks
per file), so every read here checks the creator first. Each function returns None or an empty
value for anything absent or damaged, except `mosaic_tiles`, which reports a mosaic it cannot cut
into slices (FileSkip), since stacking its tiles as one image would be silently wrong.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from .header import FileSkip, Header, as_float, as_int, as_vector, degenerate, get

__all__ = ["csa_values", "ge_component", "mosaic_tiles", "philips_diffusion", "private", "private_int",
           "uih_tiles"]

_GE_COMPONENT = {1: "phase", 2: "real", 3: "imaginary"}


def private(header: Header, creator_tag: int, tag: int, creator: str) -> Any:
    """A private element's value, or None unless its block is reserved by `creator` (vendors
    reserve blocks per file, so the tag alone does not say what the value is)."""
    owner = header.get(creator_tag)
    return header.get(tag) if owner is not None and creator in str(owner).upper() else None


def private_int(header: Header, creator_tag: int, tag: int, creator: str, fmt: str) -> int | None:
    """A private integer; without a dictionary VR pydicom gives raw bytes (struct `fmt`, file byte order)."""
    try:
        value = private(header, creator_tag, tag, creator)
        if isinstance(value, bytes):
            implicit, little = header.ds.original_encoding
            size = struct.calcsize(fmt)
            if len(value) < size:
                return None
            value = struct.unpack(("<" if little is not False else ">") + fmt, value[:size])[0]
        return as_int(value)
    except Exception:
        return None


def private_float(header: Header, creator_tag: int, tag: int, creator: str) -> float | None:
    """A private FL/FD number; raw bytes (no VR known) read as a 4- or 8-byte float."""
    try:
        value = private(header, creator_tag, tag, creator)
        if isinstance(value, bytes):
            fmt = {4: "f", 8: "d"}.get(len(value))
            if fmt is None:
                return None
            little = header.ds.original_encoding[1] is not False
            value = struct.unpack(("<" if little else ">") + fmt, value)[0]
        return as_float(value)
    except Exception:
        return None


def philips_diffusion(header: Header) -> tuple[str | None, float | None]:
    """Philips classic DWI: (2001,1004) diffusion direction ('I' isotropic, 'O' oblique, 'P',
    'M', 'S', ...) and (2001,1003) b-factor, under creator 'Philips Imaging DD 001'."""
    creator = "PHILIPS IMAGING DD 001"
    direction = private(header, 0x20010010, 0x20011004, creator)
    if isinstance(direction, bytes):
        direction = direction.decode("latin-1", "replace")
    direction = str(direction).strip().upper() if direction is not None else None
    return direction or None, private_float(header, 0x20010010, 0x20011003, creator)


def ge_component(header: Header) -> str | None:
    """GE stores magnitude/phase/real/imaginary in private (0043,102F) under creator GEMS_PARM_01."""
    return _GE_COMPONENT.get(private_int(header, 0x00430010, 0x0043102F, "GEMS_PARM_01", "h"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- Siemens CSA


def csa_values(blob: Any, names: set[str]) -> dict[str, list[str]]:
    """Values (as text) of the named elements of a Siemens CSA2 header ('SV10'; CSA1 from old
    software is not read, as dcm2niix does not read it either), {} if it is not one or is damaged.

    Layout: 'SV10', 4 unused bytes, uint32 element count, 4 unused bytes; per element a 64-byte
    name, int32 VM, 4-byte VR, int32 SyngoDT, int32 item count, 4 unused bytes; per item four int32
    (the second is the value's length), then the value, padded to 4 bytes.

    Why not nibabel's `nicom.csareader` (already a dependency): measured on nibabel's own CSA2 test
    headers (11 KB) it takes 1.7x our time (156 against 93 us), since it converts every element,
    and an item whose text does not fit its VR raises ValueError from deep inside it (seen on a
    generated header), where this returns {}. Both give the same values for the elements read here
    (`tests/test_dicom_mosaic.py` checks ours against it).
    """
    if not isinstance(blob, bytes) or blob[:4] != b"SV10":
        return {}
    out: dict[str, list[str]] = {}
    try:
        (count,) = struct.unpack_from("<I", blob, 8)
        pos, size = 16, len(blob)
        for _ in range(count):  # each element needs bytes, so a bogus count runs out of data
            name, n_items = struct.unpack_from("<64s12xi4x", blob, pos)
            pos += 84
            key = name.split(b"\0", 1)[0].decode("latin-1")
            wanted = key in names
            items = []
            for _ in range(n_items):  # every item is walked (the next element follows them), few decoded
                length = struct.unpack_from("<4i", blob, pos)[1]
                pos += 16
                if length < 0 or pos + length > size:
                    return {}
                if wanted:
                    items.append(blob[pos:pos + length].split(b"\0", 1)[0].decode("latin-1").strip())
                pos += -(-length // 4) * 4
            if wanted:
                out[key] = [item for item in items if item]
    except struct.error:
        return {}
    return out


def mosaic_tiles(ds: Header, rows: int, cols: int) -> tuple[int, list[tuple[float, float, float] | None]]:
    """A Siemens mosaic (several slices tiled into one image): tiles per side of its square grid,
    and the position of each slice's first pixel (None each where the header lacks the geometry).

    Slice k is tile k in row-major order; only the first NumberOfImagesInMosaic tiles are slices.
    """
    csa = csa_values(private(ds, 0x00290010, 0x00291010, "SIEMENS CSA HEADER"),
                     {"NumberOfImagesInMosaic", "SliceNormalVector"})
    count = private_int(ds, 0x00190010, 0x0019100A, "SIEMENS MR HEADER", "H")
    if not count:
        count = as_int(csa.get("NumberOfImagesInMosaic"))
    if not count or count < 1:
        raise FileSkip("Siemens mosaic without its number of images (NumberOfImagesInMosaic)", failed=True)
    grid = math.ceil(math.sqrt(count))
    if rows % grid or cols % grid:
        raise FileSkip(f"Siemens mosaic of {rows}x{cols} pixels cannot hold {count} images "
                       f"({grid}x{grid} tiles)", failed=True)
    ipp = as_vector(get(ds, "ImagePositionPatient"), 3)
    iop = as_vector(get(ds, "ImageOrientationPatient"), 6)
    step = as_float(get(ds, "SpacingBetweenSlices")) or as_float(get(ds, "SliceThickness"))
    if ipp is None or iop is None or degenerate(iop) or not step or step <= 0:
        return grid, [None] * count
    right, down = np.asarray(iop[:3]), np.asarray(iop[3:])
    row_sp, col_sp = as_vector(get(ds, "PixelSpacing"), 2) or (1.0, 1.0)
    # ImagePositionPatient is the corner of the whole mosaic as if it were one slice centred where
    # the first slice is: shift it by half the mosaic minus half a tile (as nibabel and dcm2niix do)
    first = (np.asarray(ipp) + right * col_sp * (cols - cols // grid) / 2
             + down * row_sp * (rows - rows // grid) / 2)
    # tiles follow the CSA slice normal, which may point against row x column (descending slices)
    normal = np.cross(right, down)
    normal /= np.linalg.norm(normal)
    csa_normal = as_vector(csa.get("SliceNormalVector"), 3)
    if csa_normal is not None and float(np.dot(csa_normal, normal)) < 0:
        normal = -normal
    return grid, [tuple(float(v) for v in first + k * step * normal) for k in range(count)]  # type: ignore[misc]


# ------------------------------------------------------------------------------- UIH VFRAME


def uih_tiles(ds: Header, rows: int, cols: int) -> tuple[int, int, list[tuple[float, ...]]]:
    """A UIH 'VFRAME' (GRID) mosaic, the DWI/fMRI layout that tiles a volume's slices in one
    image as Siemens mosaics do: (rows, columns) of its tile grid and each slice's position.

    UIH documents (dcm2niix's UIH notes, from UIH): (0065,1050) is the number of slices, laid out
    ceil(sqrt(n)) tiles across and ceil(n / across) down; each item of the (0065,1051) VFrame
    sequence holds one slice's ImagePositionPatient, in tile order. Such files carry no top-level
    ImagePositionPatient, so without that sequence the slice order is unknown: reported, never
    guessed. The block's creator string is not documented, so the block is read when reserved at
    all and the manufacturer says UIH.
    """
    maker = str(get(ds, "Manufacturer") or "").upper()
    if ds.get(0x00650010) is None or not ("UIH" in maker or "UNITED IMAGING" in maker):
        raise FileSkip("VFRAME mosaic without UIH's private block (0065): slice count and positions unknown",
                       failed=True)
    count = as_int(ds.get(0x00651050))
    if not count or count < 1:
        raise FileSkip("UIH VFRAME mosaic without its number of slices (0065,1050)", failed=True)
    across = math.ceil(math.sqrt(count))
    down = math.ceil(count / across)
    if cols % across or rows % down:
        if rows % across == 0 and cols % across == 0:
            down = across  # a square grid, as Siemens lays them out
        else:
            raise FileSkip(f"UIH VFRAME mosaic of {rows}x{cols} pixels cannot hold {count} slices "
                           f"({down}x{across} tiles)", failed=True)
    positions: list[tuple[float, ...]] = []
    items = ds.get(0x00651051)
    try:
        for item in list(items or [])[:count]:
            position = as_vector(get(item, "ImagePositionPatient"), 3)
            if position is None:
                break
            positions.append(position)
    except TypeError:  # not a sequence (e.g. read as raw bytes)
        positions = []
    if len(positions) != count:
        raise FileSkip(f"UIH VFRAME mosaic without the positions of its {count} slices (0065,1051): "
                       "slice order unknown, not stacked", failed=True)
    return down, across, positions
