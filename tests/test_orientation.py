"""DICOM and NIfTI copies of the same data give the same slices, for any storage orientation."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import dicom_factory as factory
from kspacify.sources import Pseudonymizer, VolumeInfo, discover, load, scan
from kspacify.sources.orientation import canonical_inplane

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def nifti_like_dcm2niix(volume, iop, origin, spacing, path: Path, flip_j=True):
    """Write the NIfTI a converter would make of a DICOM series: voxel i runs along DICOM columns,
    j along rows (reversed when flip_j, as dcm2niix does), k along slices; affine in RAS."""
    ds, dr, dc = spacing
    rowdir, coldir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(rowdir, coldir)
    data = np.transpose(volume, (2, 1, 0)).astype(np.float32)  # (cols, rows, slices)
    affine = np.eye(4)
    affine[:3, 0] = dc * rowdir * LPS_TO_RAS
    affine[:3, 1] = dr * coldir * LPS_TO_RAS
    affine[:3, 2] = ds * normal * LPS_TO_RAS
    affine[:3, 3] = np.asarray(origin, float) * LPS_TO_RAS
    if flip_j:
        rows = volume.shape[1]
        affine[:3, 3] = affine[:3, 3] + (rows - 1) * affine[:3, 1]
        affine[:3, 1] = -affine[:3, 1]
        data = data[:, ::-1, :]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), path)


def only_volume(path):
    (info,) = [r for r in scan(discover([str(path)]), Pseudonymizer(b"s")) if isinstance(r, VolumeInfo)]
    return info


@pytest.mark.parametrize(
    "iop",
    [
        factory.ORIENTATIONS["axial"],
        factory.ORIENTATIONS["sagittal"],
        (0.0, 0.0, -1.0, 1.0, 0.0, 0.0),  # coronal-ish stored transposed: rows R->L, columns S->I
        (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),  # axial stored rotated by 180 degrees
        (0.98, 0.17, 0.0, -0.17, 0.98, 0.0),  # oblique axial
    ],
)
def test_dicom_and_nifti_of_the_same_series_agree(tmp_path, iop):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 4000, size=(5, 12, 17)).astype(np.uint16)
    origin, spacing = (-10.0, 20.0, 5.0), (3.0, 1.5, 1.0)
    factory.write_series(tmp_path / "dicom", volume, orientation=iop, origin=origin, spacing=spacing)
    nifti_like_dcm2niix(volume, iop, origin, spacing, tmp_path / "v.nii.gz")
    from_dicom = load(only_volume(tmp_path / "dicom")).data
    from_nifti = load(only_volume(tmp_path / "v.nii.gz")).data
    np.testing.assert_array_equal(from_dicom, from_nifti)
    # and the canonical transform really is applied: compare with the rule itself
    inplane = canonical_inplane(np.asarray(iop[:3]), np.asarray(iop[3:]))
    expected = inplane.apply(volume.astype(np.float32))
    if float(np.dot(np.cross(iop[:3], iop[3:]), inplane.normal)) < 0:
        expected = expected[::-1]
    np.testing.assert_array_equal(from_dicom, expected)


def test_canonical_rule_on_named_planes():
    for name, iop in factory.ORIENTATIONS.items():
        inplane = canonical_inplane(np.asarray(iop[:3]), np.asarray(iop[3:]))
        assert inplane.plane == name
        assert not (inplane.transpose or inplane.flip_rows or inplane.flip_cols)
