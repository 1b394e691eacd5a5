"""The checks every volume passes after its reader, whatever the reader (and again when it comes
from a manifest, which a user may have edited): what a header claims must be possible.

* The pixels it claims must fit in its files: a header claiming 65535 x 65535 pixels in a file of
  a few kilobytes is refused before anything is allocated for it (uncompressed data must be all
  there; compressed data may be smaller, by at most a codec's best ratio).
* The slices of one stack must be evenly spaced: a stack with a gap (slices missing from an
  export) is refused, as NIfTI and fastMRI volumes have one slice spacing (dcm2niix warns that
  such a volume is "incompatible with NIfTI"). Repeated or separate stacks are split by the
  reader before this check.
* The pixels must be grey levels (MONOCHROME1/2): PALETTE COLOR values are colour-table indices.
* Slices ordered without positions (by instance number or file name) are noted.
* Spacings must be positive and finite: one that is not (PixelSpacing 0) is replaced by 1 mm, and
  a note says so.

A failed check is a `Skipped(failed=True)` naming the file and the reason.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from kspacify.memory import human
from kspacify.sources.base import Skipped, VolumeInfo

__all__ = ["check", "location", "note", "where"]

# Best ratios of the codecs a file may use: deflate (gzip, Deflated Explicit VR Little Endian)
# cannot pass 1032:1; image codecs (JPEG 2000, JPEG-LS on a blank image) can, so they get room.
DEFLATE_RATIO = 1100
CODEC_RATIO = 10_000
_UNCOMPRESSED = {"Implicit VR Little Endian", "Explicit VR Little Endian", "Explicit VR Big Endian"}
# slice orders that are not by position (a reader's `slice_order`), as the note says them
_UNPOSITIONED = {"instance_number": "instance number", "file": "file name", "mosaic_tile": "their tiles in the mosaic"}


def location(info: VolumeInfo) -> str:
    """Where a volume is, to name it in a message: its file, or the folder its files share."""
    return where(info.files)


def where(files: Sequence[str]) -> str:
    """The file, or the folder the files share (the first file when they share none)."""
    if len(files) == 1:
        return files[0]
    try:
        return os.path.commonpath(files)
    except ValueError:  # relative and absolute paths mixed
        return files[0]


def note(info: VolumeInfo, text: str) -> VolumeInfo:
    """`info` with one more note (PHI-free text, shown to the user and kept in the output's meta);
    a note it has already is not repeated (a manifest's volumes pass `check` again)."""
    if text in info.meta.get("notes", []):
        return info
    return replace(info, meta={**info.meta, "notes": [*info.meta.get("notes", []), text]})


def _bytes_per_pixel_and_ratio(info: VolumeInfo, path: str) -> tuple[int, int]:
    """The least bytes a stored pixel takes, and the most the file's encoding may compress it."""
    if info.source_kind == "nifti":
        try:
            itemsize = np.dtype(str(info.meta.get("stored_dtype", "uint8"))).itemsize
        except TypeError:
            itemsize = 1
        return itemsize, DEFLATE_RATIO if path.lower().endswith(".gz") else 1
    native = next((ref.native for ref in _refs(info) if ref.path == path and ref.native is not None), None)
    if native is not None:
        return np.dtype(native.dtype).itemsize, 1
    syntax = info.meta.get("transfer_syntax")
    if syntax in _UNCOMPRESSED:
        return 1, 1
    return 1, DEFLATE_RATIO if syntax and "Deflate" in str(syntax) else CODEC_RATIO


def _refs(info: VolumeInfo) -> tuple:
    """The volume's slices and those of the phase images paired with it."""
    return info.slices + (info.phase.slices if info.phase is not None else ())


def _implausible(info: VolumeInfo) -> Skipped | None:
    """A Skipped for the first file that cannot hold the pixels the header claims for it."""
    _, rows, cols = info.shape
    per_file = Counter(ref.path for ref in _refs(info))
    frames = int(info.meta.get("volumes_in_file", 1) or 1) if info.source_kind == "nifti" else 1
    for path, count in per_file.items():
        try:
            size = os.stat(path).st_size
        except OSError as error:
            return Skipped(path, f"unreadable: {error.strerror or error}", failed=True)
        itemsize, ratio = _bytes_per_pixel_and_ratio(info, path)
        claimed = count * frames * rows * cols * itemsize
        if claimed > size * ratio:
            images = f"{count * frames} images of " if count * frames > 1 else ""
            how = "" if ratio == 1 else f" (even at {ratio}:1 compression)"
            return Skipped(path, f"header claims {images}{rows} x {cols} pixels ({human(claimed)}) but the file "
                                 f"holds {human(size)}{how}: damaged or edited header", failed=True)  # fmt: skip
    return None


def check(info: VolumeInfo) -> VolumeInfo | Skipped:
    """`info` itself, `info` with a repaired spacing and a note, or a Skipped saying why it is refused."""
    slices, rows, cols = info.shape
    if min(info.shape) < 1 or slices != len(info.slices):
        return Skipped(location(info), f"volume shape {tuple(info.shape)} does not match its {len(info.slices)} "
                                       "slice(s)", failed=True)  # fmt: skip
    if info.phase is not None and len(info.phase.slices) != slices:
        return Skipped(location(info), f"{len(info.phase.slices)} acquired phase slice(s) for {slices} magnitude "
                                       "slice(s)", failed=True)  # fmt: skip
    implausible = _implausible(info)
    if implausible is not None:
        return implausible
    photometric = str(info.meta.get("photometric_interpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return Skipped(location(info), f"{photometric} images hold colour-table indices or colour, not magnitudes",
                       failed=True)  # fmt: skip
    if info.meta.get("uniform_slice_spacing") is False:
        gaps = info.meta.get("slice_gap_range_mm") or ["?", "?"]
        return Skipped(location(info), f"{slices} slices with gaps from {gaps[0]} to {gaps[1]} mm between them "
                                       "(slices missing?): a volume needs one slice spacing", failed=True)  # fmt: skip
    order = info.meta.get("slice_order")
    if order in _UNPOSITIONED and slices > 1:
        info = note(info, f"no usable slice positions or orientation: slices ordered by {_UNPOSITIONED[order]}")
    step, row, col = (float(v) for v in info.spacing)
    usable = [math.isfinite(v) and v > 0 for v in (step, row, col)]
    if not usable[0]:
        info = note(replace(info, spacing=(1.0, row, col)), f"slice spacing {step:g} mm is unusable: 1 mm assumed")
    if not (usable[1] and usable[2]):
        info = note(replace(info, spacing=(info.spacing[0], row if usable[1] else 1.0, col if usable[2] else 1.0)),
                    f"pixel spacing {row:g} x {col:g} mm is unusable: 1 mm assumed")  # fmt: skip
    return info
