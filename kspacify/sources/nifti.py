"""NIfTI (.nii, .nii.gz) volumes: each 3D volume, and each 3D volume of a 4D file.

The third voxel axis is taken as the slice axis (as dcm2niix writes it); slices are turned into the
canonical in-plane orientation of `orientation.py` using the affine (RAS in the file, LPS here) and
ordered along the canonical normal, so the same data read from DICOM comes out the same way.
Scaling (scl_slope/scl_inter) is applied by nibabel's array proxy; uncompressed files are memory
mapped, and only the volume being converted is read.

Volume names are pseudonymous (`nii_<8 hex>`: a salted hash of the file's real path, `_tNNN` per
volume of a 4D file), as file names often carry patient names; `keep_names` keeps the file name
instead. An affine that is not finite or is singular is replaced by the voxel axes (orientation
unknown), with a note.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import nibabel as nib
import numpy as np

from kspacify.acquisition import Acquisition, from_header_fields
from kspacify.sources.base import Pseudonymizer, Skipped, SliceRef, SourceError, VolumeInfo, quiet, stable_key
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
    # a plain file name (`base.safe_name`): no leading dot or dash, no "..", at most 180 characters
    return re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", name)).lstrip(".-")[:180] or "volume"


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


def _usable_affine(image: Any) -> tuple[np.ndarray, bool]:
    """The image's affine, or (when it is not finite or is singular) the voxel axes scaled by the
    usable voxel sizes; and whether the affine was usable."""
    affine = np.asarray(image.affine, dtype=float)
    if np.all(np.isfinite(affine)) and abs(float(np.linalg.det(affine[:3, :3]))) > 1e-12:
        return affine, True
    zooms = [float(z) for z in image.header.get_zooms()[:3]] + [1.0] * 3
    sizes = [z if np.isfinite(z) and z > 0 else 1.0 for z in zooms[:3]]
    return np.diag([-sizes[0], sizes[1], sizes[2], 1.0]), False  # nibabel's base affine orientation (LAS)


def _layout(affine: np.ndarray) -> tuple[InPlane, bool, np.ndarray]:
    """The in-plane transform of slices [:, :, k], whether k runs against the canonical normal,
    and the voxel sizes. Slice [i, j]: rows follow voxel axis 0, columns voxel axis 1."""
    axes = affine[:3, :3] * _RAS_TO_LPS[:, None]
    sizes = np.linalg.norm(axes, axis=0)
    sizes[sizes == 0] = 1.0
    down, right, through = (axes[:, k] / sizes[k] for k in range(3))
    inplane = canonical_inplane(right, down)
    return inplane, float(np.dot(through, inplane.normal)) < 0, sizes


def scan_nifti(paths: Iterator[Path] | list[Path], pseudonymize: Pseudonymizer,
               keep_names: bool = False) -> Iterator[VolumeInfo | Skipped]:  # fmt: skip
    """One VolumeInfo per 3D volume, from headers only."""
    for path in paths:
        try:
            with quiet("nibabel"):
                image = nib.load(str(path))
                affine, oriented_affine = _usable_affine(image)
        except Exception as error:  # nibabel raises many types for bad files
            yield Skipped(str(path), f"not a readable NIfTI file ({_short(error)})", failed=True)
            continue
        shape = image.shape  # type: ignore[attr-defined]
        if len(shape) < 2 or len(shape) > 4:
            yield Skipped(str(path), f"unsupported NIfTI shape {shape}", failed=True)
            continue
        if min(shape) < 1:
            yield Skipped(str(path), f"NIfTI shape {shape} has a zero-length dimension (no voxels)", failed=True)
            continue
        dtype = image.get_data_dtype()  # type: ignore[attr-defined]
        if dtype.names is not None:
            yield Skipped(str(path), f"unsupported NIfTI data type {dtype} (RGB or structured)", failed=True)
            continue
        nx, ny = shape[0], shape[1]
        nz = shape[2] if len(shape) > 2 else 1
        frames = shape[3] if len(shape) == 4 else 1
        inplane, reverse, sizes = _layout(affine)
        order = list(range(nz))[::-1] if reverse else list(range(nz))
        rows, cols = (ny, nx) if inplane.transpose else (nx, ny)
        row_spacing, col_spacing = inplane.spacing(float(sizes[0]), float(sizes[1]))
        subject = "_".join(m.group(0) for m in _BIDS_ENTITY.finditer(str(path))) or _stem(path)
        header = image.header
        meta: dict[str, Any] = {"plane": inplane.plane, "stored_dtype": str(dtype)}
        try:
            meta["qform_code"] = int(header["qform_code"])  # type: ignore[index]
            meta["sform_code"] = int(header["sform_code"])  # type: ignore[index]
        except (KeyError, TypeError):
            pass
        oriented = oriented_affine and bool(meta.get("qform_code", 0) or meta.get("sform_code", 0))
        if not oriented_affine:
            meta["plane"] = "unknown"
            meta["notes"] = ["affine not finite or singular: voxel axes used, orientation unknown"]
        acquisition, note = _acquisition(path, inplane, oriented)
        if note:
            meta["sidecar_note"] = note
            meta["notes"] = [*meta.get("notes", []), note]
        hashed = f"nii_{pseudonymize('nifti:' + os.path.realpath(path), 8)}"
        for frame in range(frames):
            name = _stem(path) if frames == 1 else f"{_stem(path)}_t{frame:03d}"
            entities = "_".join(m.group(0) for m in _BIDS_ENTITY.finditer(str(path.parent)))
            if entities and not name.startswith(entities):
                name = f"{entities}_{name}"
            yield VolumeInfo(
                source_kind="nifti",
                name=name if keep_names else (hashed if frames == 1 else f"{hashed}_t{frame:03d}"),
                key=stable_key("nifti", name, frame),  # the file name's, as before names were hashed
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
        with quiet("nibabel"):
            image = nib.load(path)
            proxy = image.dataobj  # type: ignore[attr-defined]
            ndim = len(image.shape)  # type: ignore[attr-defined]
            if ndim == 4:
                data = np.asarray(proxy[:, :, :, info.meta.get("volume_index", 0)])
            elif ndim == 3:
                data = np.asarray(proxy)
            else:
                data = np.asarray(proxy)[:, :, None]
            affine, _ = _usable_affine(image)
    except Exception as error:
        raise SourceError(f"{path}: cannot read NIfTI data ({_short(error)})") from error
    if np.iscomplexobj(data):
        data = np.abs(data)
    if data.dtype.kind == "f" and data.dtype.itemsize > 4:
        finite = np.abs(data[np.isfinite(data)])
        if finite.size and float(finite.max()) > float(np.finfo(np.float32).max):
            raise SourceError(f"{path}: values up to {float(finite.max()):.3g} do not fit in float32")
    inplane, _, _ = _layout(affine)
    data = np.moveaxis(data.astype(np.float32, copy=False), 2, 0)[[ref.frame for ref in info.slices]]  # type: ignore[index]
    return np.ascontiguousarray(inplane.apply(data))  # NaN and infinity are the converter's to report


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
