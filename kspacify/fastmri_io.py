"""fastMRI single-coil HDF5 output, written atomically.

Layout (as fastMRI's knee single-coil files, so `fastmri.data.SliceDataset` reads them unchanged):
`kspace` complex64 (slices, H, W), `reconstruction_esc` float32 (slices, H, W) = |ifft2c(kspace)|,
`ismrmrd_header` (ISMRMRD XML), and attributes `acquisition`, `max`, `norm`, `patient_id` plus
kspacify's provenance. See docs/format.md.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

_GAMMA_HZ_PER_T = 42.577478e6


def ismrmrd_header(size: tuple[int, int], fov_mm: tuple[float, float, float], field_strength_t: float | None) -> str:
    """A minimal ISMRMRD header valid against the ISMRMRD schema (required elements only, plus what
    fastMRI reads: encoded/recon matrix and the phase-encoding limits). An unknown field strength
    is written as a resonance frequency of 0."""
    height, width = size
    frequency = int(round(_GAMMA_HZ_PER_T * field_strength_t)) if field_strength_t else 0
    fx, fy, fz = (f"{v:.4f}" for v in fov_mm)
    space = (
        "<matrixSize><x>{w}</x><y>{h}</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>{fx}</x><y>{fy}</y><z>{fz}</z></fieldOfView_mm>"
    ).format(w=width, h=height, fx=fx, fy=fy, fz=fz)
    system = (
        f"<acquisitionSystemInformation><systemFieldStrength_T>{field_strength_t:.4f}</systemFieldStrength_T>"
        "</acquisitionSystemInformation>"
        if field_strength_t
        else ""
    )
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


@dataclass(frozen=True)
class OutputVolume:
    """Everything one output file holds; `attrs` values are str, numbers or JSON-able dicts/lists."""

    kspace: np.ndarray
    reconstruction: np.ndarray
    header: str
    attrs: dict[str, Any]


def write(path: Path, volume: OutputVolume) -> None:
    """Write to a temporary file beside `path`, then rename: an interrupted run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(temporary, "w", libver="earliest") as f:
            f.create_dataset("kspace", data=volume.kspace.astype(np.complex64, copy=False))
            f.create_dataset("reconstruction_esc", data=volume.reconstruction.astype(np.float32, copy=False))
            f.create_dataset("ismrmrd_header", data=np.bytes_(volume.header.encode("utf-8")))
            for key, value in volume.attrs.items():
                f.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else value
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
