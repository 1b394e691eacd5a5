"""Small synthetic fastMRI-style HDF5 files for tests (import as `from fastmri_factory import ...`).

A fastMRI file holds fully sampled complex64 k-space, 'kspace': (slices, H, W) single-coil (knee) or
(slices, coils, H, W) multi-coil (brain), with the readout (H) oversampled 2x; an 'ismrmrd_header'
XML with encodedSpace / reconSpace matrixSize and encodingLimits kspace_encoding_step_1; a magnitude
reconstruction ('reconstruction_esc' single-coil, 'reconstruction_rss' multi-coil) of the recon
matrix size; attrs 'acquisition', 'max', 'norm', 'patient_id'. Real files are 640 x 368 (knee) with a
320 x 320 recon; these helpers build the same structure at any (small) size.

Typical use:

    image = phantom((32, 32))                                   # the known complex image
    path = write_singlecoil(tmp_path / "knee.h5", image[None])  # k-space 64 x 40, recon 32 x 32
    path = write_multicoil(tmp_path / "brain.h5", image[None], n_coils=4)

Conventions: k-space = kspacify.kspace.fft2c of the image on the oversampled field of view; the
known image sits in the centre rows (centre index H // 2, as the readers crop), zeros around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kspacify.kspace import fft2c, ifft2c

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"


def ismrmrd_header(
    encoded: tuple[int, int],
    recon: tuple[int, int],
    fov_mm: tuple[float, float, float] = (280.0, 140.0, 3.0),
    enc1_center: int | None = None,
    enc1_maximum: int | None = None,
) -> str:
    """A minimal ismrmrd XML header like fastMRI's (x = readout = rows, y = phase encode = columns)."""
    ex, ey = encoded
    rx, ry = recon
    center = ey // 2 if enc1_center is None else enc1_center
    maximum = ey - 1 if enc1_maximum is None else enc1_maximum
    fx, fy, fz = fov_mm
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="{ISMRMRD_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <studyInformation><studyTime>00:00:00</studyTime></studyInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T>
  </acquisitionSystemInformation>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fx * 2:.1f}</x><y>{fy:.1f}</y><z>{fz:.1f}</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fx:.1f}</x><y>{fy:.1f}</y><z>{fz:.1f}</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1) with 0 at the centre pixel (index n // 2)."""
    rows, cols = shape
    y = (np.arange(rows) - rows // 2) / (rows / 2)
    x = (np.arange(cols) - cols // 2) / (cols / 2)
    return np.meshgrid(y, x, indexing="ij")


def phantom(shape: tuple[int, int] = (32, 32), seed: int = 0) -> np.ndarray:
    """A complex64 test image: a few ellipses (magnitude 0.3..1) with a smooth, non-trivial phase."""
    rng = np.random.default_rng(seed)
    y, x = _grid(shape)
    magnitude = np.zeros(shape)
    magnitude[(y / 0.8) ** 2 + (x / 0.65) ** 2 <= 1] = 0.6
    for _ in range(4):
        cy, cx = rng.uniform(-0.35, 0.35, 2)
        ry, rx = rng.uniform(0.1, 0.3, 2)
        magnitude[((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1] = rng.uniform(0.3, 1.0)
    phase = 1.2 * x - 0.8 * y + 1.5 * (x**2 + y**2) + rng.uniform(-np.pi, np.pi)
    return (magnitude * np.exp(1j * phase)).astype(np.complex64)


def smooth_sensitivities(n_coils: int, shape: tuple[int, int], seed: int = 0, width: float = 1.2) -> np.ndarray:
    """Complex64 (C, H, W) coil maps: broad Gaussians centred around the field of view, each with a
    constant plus linear phase (smooth, like real receive fields)."""
    rng = np.random.default_rng(seed)
    y, x = _grid(shape)
    maps = []
    for c in range(n_coils):
        angle = 2 * np.pi * c / n_coils
        cy, cx = 0.8 * np.sin(angle), 0.8 * np.cos(angle)
        magnitude = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
        phase = rng.uniform(-np.pi, np.pi) + 0.3 * (np.cos(angle) * x + np.sin(angle) * y)
        maps.append(magnitude * np.exp(1j * phase))
    return np.asarray(maps, dtype=np.complex64)


def oversampled_frame(images: np.ndarray, oversample: int = 2, width: int | None = None) -> np.ndarray:
    """Embed images (S, H, W) in the centre of a (S, oversample * H, width or W) zero frame."""
    images = np.asarray(images)
    slices, rows, cols = images.shape
    out_rows, out_cols = oversample * rows, cols if width is None else width
    if out_cols < cols:
        raise ValueError("width must be at least the image width")
    frame = np.zeros((slices, out_rows, out_cols), dtype=np.complex64)
    r0 = out_rows // 2 - rows // 2
    c0 = out_cols // 2 - cols // 2
    frame[:, r0 : r0 + rows, c0 : c0 + cols] = images
    return frame


def singlecoil_kspace(images: np.ndarray, oversample: int = 2, width: int | None = None) -> np.ndarray:
    """(S, oversample*H, W') complex64 k-space of images on a readout-oversampled field of view."""
    return fft2c(oversampled_frame(images, oversample, width)).astype(np.complex64)


def multicoil_kspace(
    images: np.ndarray,
    sensitivities: np.ndarray | int = 4,
    oversample: int = 2,
    width: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(S, C, oversample*H, W') complex64 k-space of image * coil map, and the maps (C, oversample*H, W')."""
    frame = oversampled_frame(images, oversample, width)
    if isinstance(sensitivities, int):
        sensitivities = smooth_sensitivities(sensitivities, frame.shape[1:], seed)
    coils = frame[:, None] * sensitivities[None]
    return fft2c(coils).astype(np.complex64), np.asarray(sensitivities)


def write_fastmri_h5(
    path: str | Path,
    kspace: np.ndarray,
    recon_size: tuple[int, int],
    *,
    acquisition: str | None = None,
    patient_id: str | None = None,
    attrs: dict[str, Any] | None = None,
    header: bool = True,
    reconstruction: bool = True,
    mask: np.ndarray | None = None,
) -> Path:
    """Write a fastMRI-style file around `kspace` ((S, H, W) or (S, C, H, W) complex64)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kspace = np.asarray(kspace, dtype=np.complex64)
    multicoil = kspace.ndim == 4
    rows, cols = kspace.shape[-2:]
    # magnitude reconstruction cropped to the recon matrix (ESC: the image; RSS: root-sum-of-squares)
    images = ifft2c(kspace)
    magnitude = np.sqrt(np.sum(np.abs(images) ** 2, axis=1)) if multicoil else np.abs(images)
    rx, ry = min(recon_size[0], rows), min(recon_size[1], cols)
    r0, c0 = rows // 2 - rx // 2, cols // 2 - ry // 2
    recon = magnitude[:, r0 : r0 + rx, c0 : c0 + ry].astype(np.float32)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=kspace)
        if header:
            handle.create_dataset("ismrmrd_header", data=ismrmrd_header((rows, cols), recon_size).encode("utf-8"))
        if reconstruction:
            handle.create_dataset("reconstruction_rss" if multicoil else "reconstruction_esc", data=recon)
        if mask is not None:
            handle.create_dataset("mask", data=np.asarray(mask, dtype=bool))
        handle.attrs["acquisition"] = acquisition or ("AXT1POST" if multicoil else "CORPD_FBK")
        handle.attrs["max"] = float(recon.max()) if recon.size else 0.0
        handle.attrs["norm"] = float(np.linalg.norm(recon))
        handle.attrs["patient_id"] = patient_id or path.stem
        for name, value in (attrs or {}).items():
            handle.attrs[name] = value
    return path


def write_singlecoil(
    path: str | Path, images: np.ndarray, oversample: int = 2, width: int | None = None, **options: Any
) -> Path:
    """Single-coil file whose recon matrix is the images' (H, W): k-space (S, oversample*H, width or W)."""
    images = np.asarray(images)
    kspace = singlecoil_kspace(images, oversample, width)
    return write_fastmri_h5(path, kspace, images.shape[-2:], **options)


def write_multicoil(
    path: str | Path,
    images: np.ndarray,
    n_coils: int = 4,
    oversample: int = 2,
    width: int | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[Path, np.ndarray]:
    """Multi-coil file of images * smooth coil maps; returns (path, maps on the oversampled frame)."""
    images = np.asarray(images)
    kspace, maps = multicoil_kspace(images, n_coils, oversample, width, seed)
    return write_fastmri_h5(path, kspace, images.shape[-2:], **options), maps
