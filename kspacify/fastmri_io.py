"""fastMRI HDF5 output, single- or multi-coil, written atomically.

Single-coil layout (as fastMRI's knee single-coil files): `kspace` complex64 (slices, H, W),
`reconstruction_esc` float32 (slices, H, W) = |ifft2c(kspace)|. Multi-coil layout (as fastMRI's
multi-coil brain and knee files): `kspace` complex64 (slices, coils, H, W), `reconstruction_rss`
float32 (slices, H, W), the root sum of squares of the coil images. Both have `ismrmrd_header`
(ISMRMRD XML) and attributes `acquisition`, `max`, `norm` (of the reconstruction), `patient_id` plus
kspacify's provenance, so `fastmri.data.SliceDataset` reads them unchanged. See docs/format.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kspacify.atomic import temporary_for
from kspacify.errors import VolumeError
from kspacify.termination import shielded

REQUIRED_ATTRS = ("kspacify_version", "max", "norm", "phase_method")

_GAMMA_HZ_PER_T = 42.577478e6


def ismrmrd_header(
    size: tuple[int, int], fov_mm: tuple[float, float, float], field_strength_t: float | None, coils: int = 1
) -> str:
    """A minimal ISMRMRD header valid against the ISMRMRD schema (required elements only, plus what
    fastMRI reads: encoded/recon matrix and the phase-encoding limits). An unknown field strength
    is written as a resonance frequency of 0; more than one coil as `receiverChannels`."""
    height, width = size
    frequency = int(round(_GAMMA_HZ_PER_T * field_strength_t)) if field_strength_t else 0
    fx, fy, fz = (f"{v:.4f}" for v in fov_mm)
    space = (
        "<matrixSize><x>{w}</x><y>{h}</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>{fx}</x><y>{fy}</y><z>{fz}</z></fieldOfView_mm>"
    ).format(w=width, h=height, fx=fx, fy=fy, fz=fz)
    system = f"<systemFieldStrength_T>{field_strength_t:.4f}</systemFieldStrength_T>" if field_strength_t else ""
    if coils > 1:
        system += f"<receiverChannels>{int(coils)}</receiverChannels>"
    if system:
        system = f"<acquisitionSystemInformation>{system}</acquisitionSystemInformation>"
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"{system}"
        f"<experimentalConditions><H1resonanceFrequency_Hz>{frequency}</H1resonanceFrequency_Hz></experimentalConditions>"
        "<encoding>"
        f"<encodedSpace>{space}</encodedSpace>"
        f"<reconSpace>{space}</reconSpace>"
        "<encodingLimits>"
        f"<kspace_encoding_step_1><minimum>0</minimum><maximum>{width - 1}</maximum><center>{width // 2}</center></kspace_encoding_step_1>"
        "<kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>"
        "<slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>"
        "</encodingLimits>"
        "<trajectory>cartesian</trajectory>"
        "</encoding>"
        "</ismrmrdHeader>"
    )


class VolumeWriter:
    """Streams one volume into a temporary HDF5 file beside `path`, slab by slab, so memory holds a
    slab, not the volume's k-space. `shape` is the k-space's: (slices, H, W) for the single-coil
    layout, (slices, coils, H, W) for the multi-coil one. Leaving the `with` block normally adds
    `attrs` plus `max` and `norm` (accumulated from the slabs) and renames the file into place;
    leaving it by an exception deletes the temporary: an interrupted run leaves no half-written file.

    HDF5 writes through a Python file (h5py's file-object driver), unbuffered: a full disk is an
    OSError at the write that met it, and the file can be closed and deleted after it. (With
    HDF5's own driver a failed flush left the file open inside the library, holding the space, and
    the process crashed when it was collected.)"""

    def __init__(self, path: Path, shape: tuple[int, ...], header: str, run: str | None = None) -> None:
        if len(shape) not in (3, 4):
            raise ValueError(f"k-space shape must be (slices, H, W) or (slices, coils, H, W), got {shape}")
        self.path = path
        self.attrs: dict[str, Any] = {}
        self._temporary = temporary_for(path, run=run)
        self._shape = tuple(shape)
        self._target = "reconstruction_rss" if len(shape) == 4 else "reconstruction_esc"
        self._target_shape = (shape[0], *shape[-2:])
        self._header = header
        self._max = 0.0
        self._sum_of_squares = 0.0
        self._handle: Any = None
        self._file: Any = None

    def __enter__(self) -> VolumeWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with shielded():  # a signal inside HDF5's calls could leave the file half-closed
            return self._open()

    def _open(self) -> VolumeWriter:
        try:
            self._handle = open(self._temporary, "xb+", buffering=0)
            self._file = h5py.File(self._handle, "w", libver="earliest")
            self._kspace = self._file.create_dataset("kspace", self._shape, dtype=np.complex64)
            self._reconstruction = self._file.create_dataset(self._target, self._target_shape, dtype=np.float32)
            self._file.create_dataset("ismrmrd_header", data=np.bytes_(self._header.encode("utf-8")))
        except BaseException:
            self._abandon()
            raise
        return self

    def write(self, start: int, kspace: np.ndarray, reconstruction: np.ndarray) -> None:
        """Slices start .. start + len(kspace) of both datasets (the reconstruction: `reconstruction_esc`
        or, multi-coil, `reconstruction_rss`). Nothing non-finite or negative is written: such values
        are a phase method's or a check's bug, and fail the volume."""
        if not (np.all(np.isfinite(kspace)) and np.all(np.isfinite(reconstruction)) and np.all(reconstruction >= 0)):
            raise VolumeError("k-space or magnitude not finite or negative after synthesis: nothing written")
        stop = start + len(kspace)
        with shielded():
            # write_direct: no per-call selection parsing (a multi-coil slice is megabytes, written often)
            self._kspace.write_direct(np.ascontiguousarray(kspace, dtype=np.complex64), dest_sel=np.s_[start:stop])
            self._reconstruction.write_direct(np.ascontiguousarray(reconstruction, dtype=np.float32), dest_sel=np.s_[start:stop])
        if reconstruction.size:
            self._max = max(self._max, float(reconstruction.max()))
            values = reconstruction.ravel().astype(np.float64)  # both operands float64: no second cast in dot
            self._sum_of_squares += float(np.dot(values, values))

    def __exit__(self, error_type: type[BaseException] | None, *rest: object) -> None:
        with shielded():
            self._close(error_type is None)

    def _close(self, complete: bool) -> None:
        done = False
        try:
            if complete:
                attrs = {**self.attrs, "max": self._max, "norm": float(np.sqrt(self._sum_of_squares))}
                for key, value in attrs.items():
                    is_json = isinstance(value, (dict, list, tuple))
                    self._file.attrs[key] = json.dumps(value, sort_keys=True) if is_json else value
                self._file.close()
                self._handle.close()
                os.replace(self._temporary, self.path)
                done = True
        finally:
            if not done:
                self._abandon()

    def _abandon(self) -> None:
        """Close what is open, whatever fails (on a full disk every flush does), and delete the temporary."""
        for thing in (self._file, self._handle):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()
        with contextlib.suppress(FileNotFoundError):
            self._temporary.unlink()


def incomplete(path: Path, slices: int) -> str | None:
    """Why the file at `path` is not a complete kspacify volume of `slices` slices (None if it is):
    what `--resume` asks before it keeps an existing output. Cheap: opens the file and reads names,
    shapes and attributes, no data. (Single- and multi-coil layouts alike: `kspace` of `slices`
    slices, a `reconstruction_*` of as many, the header and kspacify's attributes.)"""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    try:
        with shielded(), h5py.File(path, "r") as handle:
            missing = [name for name in ("kspace", "ismrmrd_header") if name not in handle]
            if missing:
                return f"has no {', '.join(missing)} (not a kspacify file?)"
            missing = [name for name in REQUIRED_ATTRS if name not in handle.attrs]
            if missing:
                return f"lacks the attributes {', '.join(missing)} (not a kspacify file?)"
            shape = handle["kspace"].shape
            images = [handle[name].shape for name in handle if name.startswith("reconstruction_")]
            if len(shape) < 3 or shape[0] != slices or not any(image[:1] == (slices,) for image in images):
                return f"holds k-space of shape {shape} and images of {images or 'no'} shape, not {slices} slices"
    except OSError:  # h5py: truncated, empty, not HDF5
        return "is not a readable HDF5 file (empty or cut short)"
    return None
