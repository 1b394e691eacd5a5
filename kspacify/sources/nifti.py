"""NIfTI (.nii, .nii.gz) volumes: each 3D volume, and each 3D volume of a 4D file.

The third voxel axis is taken as the slice axis (as dcm2niix writes it); slices are turned into the
canonical in-plane orientation of `orientation.py` using the affine (RAS in the file, LPS here) and
ordered along the canonical normal, so the same data read from DICOM comes out the same way.
Scaling (scl_slope/scl_inter) is applied by nibabel's array proxy; uncompressed files are memory
mapped, and only the volume being converted is read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import nibabel as nib
import numpy as np

from kspacify.acquisition import Acquisition, from_header_fields
from kspacify.sources.base import Pseudonymizer, Skipped, SliceRef, SourceError, VolumeInfo, stable_key
from kspacify.sources.orientation import InPlane, canonical_inplane

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])
_BIDS_ENTITY = re.compile(r"(sub-[A-Za-z0-9]+)|(ses-[A-Za-z0-9]+)")


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".NII.GZ", ".NII"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "volume"


def sidecar_of(path: Path) -> Path:
    """The dcm2niix/BIDS JSON sidecar of a NIfTI file: the same name with .json."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".NII.GZ", ".NII"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def _acquisition(path: Path, inplane: InPlane, oriented: bool) -> tuple[Acquisition, str | None]:
    """The acquisition from a dcm2niix/BIDS sidecar beside the file (times in seconds there), and
    the B0 direction from the affine where the file says it holds a real orientation (qform or
    sform code > 0). Also a note when a sidecar exists but cannot be read."""
    fields: dict[str, Any] = {}
    note = None
    sidecar = sidecar_of(path)
    if sidecar.is_file():
        try:
            if sidecar.stat().st_size > 1 << 20:
                raise ValueError("larger than 1 MiB")
            loaded = json.loads(sidecar.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
            fields = loaded
        except (OSError, ValueError, RecursionError) as error:  # no file name: names may carry PHI
            note = f"JSON sidecar unreadable ({type(error).__name__}); acquisition unknown"
    return from_header_fields(fields, inplane.b0_direction() if oriented else None, seconds=True), note


def _layout(affine: np.ndarray) -> tuple[InPlane, bool, np.ndarray]:
    """The in-plane transform of slices [:, :, k], whether k runs against the canonical normal,
    and the voxel sizes. Slice [i, j]: rows follow voxel axis 0, columns voxel axis 1."""
    axes = affine[:3, :3] * _RAS_TO_LPS[:, None]
    sizes = np.linalg.norm(axes, axis=0)
    sizes[sizes == 0] = 1.0
    down, right, through = (axes[:, k] / sizes[k] for k in range(3))
    inplane = canonical_inplane(right, down)
    return inplane, float(np.dot(through, inplane.normal)) < 0, sizes


def scan_nifti(paths: Iterator[Path] | list[Path], pseudonymize: Pseudonymizer) -> Iterator[VolumeInfo | Skipped]:
    """One VolumeInfo per 3D volume, from headers only."""
    for path in paths:
        try:
            image = nib.load(str(path))
        except Exception as error:  # nibabel raises many types for bad files
            yield Skipped(str(path), f"not a readable NIfTI file ({_short(error)})", failed=True)
            continue
        shape = image.shape
        if len(shape) < 2 or len(shape) > 4 or (len(shape) == 4 and min(shape[:3]) < 1):
            yield Skipped(str(path), f"unsupported NIfTI shape {shape}", failed=True)
            continue
        dtype = image.get_data_dtype()
        if dtype.names is not None:
            yield Skipped(str(path), f"unsupported NIfTI data type {dtype} (RGB or structured)", failed=True)
            continue
        nx, ny = shape[0], shape[1]
        nz = shape[2] if len(shape) > 2 else 1
        frames = shape[3] if len(shape) == 4 else 1
        inplane, reverse, sizes = _layout(image.affine)
        order = list(range(nz))[::-1] if reverse else list(range(nz))
        rows, cols = (ny, nx) if inplane.transpose else (nx, ny)
        row_spacing, col_spacing = inplane.spacing(float(sizes[0]), float(sizes[1]))
        subject = "_".join(m.group(0) for m in _BIDS_ENTITY.finditer(str(path))) or _stem(path)
        header = image.header
        meta: dict[str, Any] = {"plane": inplane.plane, "stored_dtype": str(dtype)}
        try:
            meta["qform_code"] = int(header["qform_code"])
            meta["sform_code"] = int(header["sform_code"])
        except (KeyError, TypeError):
            pass
        oriented = bool(meta.get("qform_code", 0) or meta.get("sform_code", 0))
        acquisition, note = _acquisition(path, inplane, oriented)
        if note:
            meta["sidecar_note"] = note
        for frame in range(frames):
            name = _stem(path) if frames == 1 else f"{_stem(path)}_t{frame:03d}"
            entities = "_".join(m.group(0) for m in _BIDS_ENTITY.finditer(str(path.parent)))
            if entities and not name.startswith(entities):
                name = f"{entities}_{name}"
            yield VolumeInfo(
                source_kind="nifti",
                name=name,
                key=stable_key("nifti", name, frame),
                patient=pseudonymize(subject),
                slices=tuple(SliceRef(str(path), k) for k in order),
                shape=(nz, rows, cols),
                spacing=(float(sizes[2]), row_spacing, col_spacing),
                meta={**meta, "volume_index": frame, "volumes_in_file": frames},
                acquisition=acquisition,
            )


def load_nifti(info: VolumeInfo) -> np.ndarray:
    """The volume's magnitudes, float32 (slices, rows, cols), canonical orientation and slice order."""
    path = info.slices[0].path
    try:
        image = nib.load(path)
        proxy = image.dataobj
        ndim = len(image.shape)
        if ndim == 4:
            data = np.asarray(proxy[:, :, :, info.meta.get("volume_index", 0)])
        elif ndim == 3:
            data = np.asarray(proxy)
        else:
            data = np.asarray(proxy)[:, :, None]
    except Exception as error:
        raise SourceError(f"{path}: cannot read NIfTI data ({_short(error)})") from error
    if np.iscomplexobj(data):
        data = np.abs(data)
    inplane, _, _ = _layout(image.affine)
    data = np.moveaxis(data.astype(np.float32, copy=False), 2, 0)[[ref.frame for ref in info.slices]]
    data = np.ascontiguousarray(inplane.apply(data))
    if not np.all(np.isfinite(data)):
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    return data


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
