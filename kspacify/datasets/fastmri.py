"""fastMRI HDF5 files with fully sampled k-space: single-coil knee (S, H, W) and multi-coil (S, C, H, W).

Per slice:

1. Multi-coil k-space is compressed to one virtual coil by PCA coil compression (software channel
   compression: Buehrer et al., MRM 2007; Huang et al., MRI 2008): the coils' k-space samples of the
   slice form a C x N matrix X; the first principal virtual coil is u^H X, where u is the dominant
   eigenvector of X X^H (the first left singular vector of X), i.e. the one fixed linear combination
   of the coils that keeps the most signal energy. This is how Tygert & Zbontar, "Simulating
   single-coil MRI from the responses of multiple coils" (arXiv:1811.08026; Commun. Appl. Math.
   Comput. Sci. 15(2), 2020) frame single-coil emulation: one linear combination of the receivers
   per slice, an aggregate coil whose phase and shading are those of a real receiver. (fastMRI's own
   "emulated single-coil" release chose its combination weights by its own fit; PCA needs no
   reference image, so the weights here are not bit-identical to that release.) u is defined only up
   to a unit complex factor; it is fixed by making the weight of the strongest coil (largest |u_c|)
   real and positive, so the phase is referenced to that coil, deterministically.
2. image = ifft2c(kspace) (the project convention, as fastMRI's).
3. Centre-crop to the ismrmrd header's reconSpace matrix size (x -> rows, y -> columns, typically
   320 x 320), as fastMRI's reconstructions do: the readout (rows) is 2x oversampled. Each axis is
   cropped to min(recon, image) size. Without a readable header no crop is made (noted in `source`).
4. Centre-crop to square and Fourier-resample to size x size (`resize.to_square_size`).
5. Per-volume normalization (`base.make_slices`).

Files with a 'mask' dataset (fastMRI test/challenge files, undersampled) are skipped: their k-space
is not fully sampled. Files without a complex 'kspace' dataset are skipped.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from kspacify.acquisition import Acquisition, from_header_fields
from kspacify.datasets.base import ComplexSlice, VolumeRef, make_slices
from kspacify.datasets.resize import center_crop, to_square_size
from kspacify.errors import DataError
from kspacify.kspace import ifft2c

READER = "fastmri"
SUFFIXES = (".h5", ".hdf5")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ElementTree.Element | None, name: str) -> ElementTree.Element | None:
    if node is None:
        return None
    for child in node:
        if _local(child.tag) == name:
            return child
    return None


def _path(node: ElementTree.Element | None, *names: str) -> ElementTree.Element | None:
    for name in names:
        node = _child(node, name)
    return node


def _int(node: ElementTree.Element | None) -> int | None:
    if node is None or node.text is None:
        return None
    try:
        return int(float(node.text.strip()))
    except ValueError:
        return None


def parse_header(xml: bytes | str) -> dict[str, Any]:
    """The facts kspacify uses from an ismrmrd header (namespace-agnostic); missing ones are None.

    Returns encoded_size and recon_size as (x, y, z) lists, and kspace_encoding_step_1 limits
    (minimum, maximum, center).
    """
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="replace")
    root = ElementTree.fromstring(xml.strip())
    encoding = _child(root, "encoding")

    def size(space: str) -> list[int] | None:
        matrix = _path(encoding, space, "matrixSize")
        values = [_int(_child(matrix, axis)) for axis in ("x", "y", "z")]
        return None if values[0] is None or values[1] is None else [v if v is not None else 1 for v in values]

    limits = _path(encoding, "encodingLimits", "kspace_encoding_step_1")
    sequence = _child(root, "sequenceParameters")

    def number(element: Any) -> float | None:
        try:
            return float(element.text) if element is not None and element.text else None
        except ValueError:
            return None

    sequence_type = _child(sequence, "sequence_type")
    return {
        "encoded_size": size("encodedSpace"),
        "recon_size": size("reconSpace"),
        "kspace_encoding_step_1": {
            name: _int(_child(limits, name)) for name in ("minimum", "maximum", "center")
        },
        "field_strength_t": number(_path(root, "acquisitionSystemInformation", "systemFieldStrength_T")),
        "TE": number(_child(sequence, "TE")),
        "TR": number(_child(sequence, "TR")),
        "TI": number(_child(sequence, "TI")),
        "flip_angle_deg": number(_child(sequence, "flipAngle_deg")),
        "sequence_type": sequence_type.text.strip() if sequence_type is not None and sequence_type.text else None,
    }


def acquisition_of(header: dict[str, Any] | None, attrs: dict[str, Any]) -> Acquisition:
    """What the file says of its acquisition: kspacify's own `acquisition_record` attribute (a file
    kspacify wrote), else the ISMRMRD header (field strength, TE/TR/TI in ms, flip angle, and the
    family from `sequence_type` where the header names one)."""
    record = attrs.get("acquisition_record")
    if isinstance(record, str):
        try:
            return Acquisition.from_json(json.loads(record))
        except ValueError:
            pass
    if not header:
        return Acquisition()
    kind = (header.get("sequence_type") or "").lower()
    codes = [code for word, code in (("spinecho", "SE"), ("spin_echo", "SE"), ("gradient", "GR"), ("gre", "GR"),
                                     ("epi", "EP"), ("inversion", "IR")) if word in kind.replace(" ", "")]  # fmt: skip
    return from_header_fields({
        "MagneticFieldStrength": header.get("field_strength_t"), "EchoTime": header.get("TE"),
        "RepetitionTime": header.get("TR"), "InversionTime": header.get("TI"), "FlipAngle": header.get("flip_angle_deg"),
        "ScanningSequence": codes,
    })  # fmt: skip


def compress_coils(kspace: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Multi-coil k-space (C, H, W) -> (virtual coil (H, W) complex64, weights u (C,), energy fraction).

    virtual = sum_c conj(u_c) * kspace_c, u the dominant eigenvector of the coil covariance X X^H,
    phase-fixed so its largest-magnitude entry is real positive. The energy fraction is the share of
    the total k-space energy the virtual coil keeps (1 for a rank-one coil set).
    """
    coils = kspace.shape[0]
    matrix = kspace.reshape(coils, -1).astype(np.complex128)
    covariance = matrix @ matrix.conj().T
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    weights = eigenvectors[:, -1]
    strongest = int(np.argmax(np.abs(weights)))
    if abs(weights[strongest]) > 0:
        weights = weights * (np.conj(weights[strongest]) / abs(weights[strongest]))
    virtual = (weights.conj() @ matrix).reshape(kspace.shape[1:])
    total = float(np.sum(np.clip(eigenvalues, 0, None)))
    fraction = float(max(eigenvalues[-1], 0.0) / total) if total > 0 else 1.0
    return virtual.astype(np.complex64), weights.astype(np.complex64), fraction


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _header(handle: h5py.File) -> dict[str, Any] | None:
    if "ismrmrd_header" not in handle:
        return None
    try:
        raw = handle["ismrmrd_header"][()]
        if isinstance(raw, np.ndarray):
            raw = raw.item() if raw.shape == () else raw.tobytes()
        return parse_header(raw)
    except (ElementTree.ParseError, OSError, TypeError, ValueError):
        return None


def scan(path: Path, key: str) -> VolumeRef | str:
    """A VolumeRef for a fastMRI file with fully sampled complex k-space, or why it is skipped."""
    try:
        with h5py.File(path, "r") as handle:
            if "kspace" not in handle or not isinstance(handle["kspace"], h5py.Dataset):
                return "HDF5 file without a 'kspace' dataset"
            dataset = handle["kspace"]
            if not np.issubdtype(dataset.dtype, np.complexfloating):
                return f"'kspace' is not complex (dtype {dataset.dtype})"
            if dataset.ndim not in (2, 3, 4):
                return f"'kspace' has unsupported shape {dataset.shape}"
            if "mask" in handle:
                return "undersampled k-space ('mask' dataset: fastMRI test/challenge file)"
            attrs = {name: _attr(value) for name, value in handle.attrs.items()}
            header = _header(handle)
            shape = tuple(dataset.shape)
    except OSError as error:
        return f"unreadable HDF5 ({error})"
    coils = shape[1] if len(shape) == 4 else 1
    meta = {
        "coils": coils,
        "multicoil": len(shape) == 4,
        "acquisition": attrs.get("acquisition"),
        "recon_size": header["recon_size"] if header else None,
        "encoded_size": header["encoded_size"] if header else None,
    }
    patient = attrs.get("patient_id")
    return VolumeRef(key=key, file=str(path), reader=READER, shape=shape, patient=str(patient or ""), meta=meta,
                     acquisition=acquisition_of(header, attrs))  # fmt: skip


def read(ref: VolumeRef, size: int = 256) -> Iterator[ComplexSlice]:
    """The slices of one fastMRI volume (see module doc for the steps)."""
    try:
        handle = h5py.File(ref.file, "r")
    except OSError as error:
        raise DataError(f"{ref.file}: unreadable HDF5 ({error})") from error
    with handle:
        dataset = handle["kspace"]
        header = _header(handle)
        recon = header["recon_size"] if header else None
        multicoil = dataset.ndim == 4
        n_slices = 1 if dataset.ndim == 2 else dataset.shape[0]
        images = []
        per_slice: list[dict[str, Any]] = []
        for index in range(n_slices):
            kspace = np.asarray(dataset[()] if dataset.ndim == 2 else dataset[index])
            extra: dict[str, Any] = {}
            if multicoil:
                kspace, _weights, fraction = compress_coils(kspace)
                extra = {"virtual_coil_energy_fraction": fraction}
            image = ifft2c(kspace.astype(np.complex64))
            if recon is not None:
                image = center_crop(image, (recon[0], recon[1]))
            images.append(to_square_size(image, size))
            per_slice.append(extra)
    source = {
        "file": ref.file,
        "reader": READER,
        "original_shape": list(ref.shape),
        "recon_crop": [recon[0], recon[1]] if recon is not None else None,
        "coil_compression": "pca-first-virtual-coil" if multicoil else None,
        "coils": ref.meta.get("coils", 1),
        "resize": "centre-crop-square+fourier",
    }
    if recon is None:
        source["note"] = "no readable ismrmrd_header: no recon crop"
    yield from make_slices(np.stack(images), ref.key, source, per_slice=per_slice)
