import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kspacify.sources import Found, Pseudonymizer, Skipped, VolumeInfo, load, scan

PSEUDO = Pseudonymizer(b"test-salt")


def scan_paths(*paths):
    return list(scan([Found(Path(p), explicit=True) for p in paths], PSEUDO))


def axial_ras_volume(shape=(40, 50, 6)):
    """A volume whose value encodes its voxel index, so orientation can be checked exactly."""
    i, j, k = np.indices(shape)
    return (i + 100 * j + 10000 * k).astype(np.float32)


def test_ras_axial_volume_comes_out_in_radiological_display(tmp_path):
    data = axial_ras_volume()
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 3.0, 4.0, 1.0])), path)
    (info,) = scan_paths(path)
    assert isinstance(info, VolumeInfo)
    volume = load(info).data
    # canonical axial: rows anterior->posterior (RAS j descending), cols right->left (RAS i descending),
    # slices inferior->superior (k ascending)
    expected = np.stack([data[::-1, ::-1, k].T for k in range(data.shape[2])])
    np.testing.assert_array_equal(volume, expected)
    assert info.shape == expected.shape
    assert info.spacing == (4.0, 3.0, 2.0)
    assert info.meta["plane"] == "axial"


def test_flipped_storage_gives_the_same_slices(tmp_path):
    data = axial_ras_volume()
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "a.nii")
    # the same anatomy stored with x and z reversed (LAS-like, descending slices)
    flipped_affine = affine.copy()
    flipped_affine[0, 0], flipped_affine[2, 2] = -2.0, -4.0
    flipped_affine[0, 3], flipped_affine[2, 3] = 2.0 * 39, 4.0 * 5
    nib.save(nib.Nifti1Image(data[::-1, :, ::-1].copy(), flipped_affine), tmp_path / "b.nii")
    a, b = scan_paths(tmp_path / "a.nii", tmp_path / "b.nii")
    np.testing.assert_array_equal(load(a).data, load(b).data)


def test_4d_file_gives_one_volume_per_frame_and_scaling_is_applied(tmp_path):
    data = np.stack([np.full((8, 9, 3), 10, np.int16), np.full((8, 9, 3), 20, np.int16)], axis=-1)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_slope_inter(0.5, 1.0)
    nib.save(image, tmp_path / "sub-07_bold.nii.gz")
    infos = scan_paths(tmp_path / "sub-07_bold.nii.gz")
    stem = infos[0].name[: -len("_t000")]
    assert re.fullmatch(r"nii_[0-9a-f]{8}", stem)  # pseudonymous: file names may carry patient names
    assert [i.name for i in infos] == [f"{stem}_t000", f"{stem}_t001"]
    kept = list(scan([Found(tmp_path / "sub-07_bold.nii.gz", explicit=True)], PSEUDO, keep_names=True))
    assert [i.name for i in kept] == ["sub-07_bold_t000", "sub-07_bold_t001"]
    assert load(infos[0]).data.max() == pytest.approx(6.0)
    assert load(infos[1]).data.max() == pytest.approx(11.0)
    assert infos[0].patient == infos[1].patient == PSEUDO("sub-07")


def test_broken_and_unsupported_files_are_skipped_with_a_reason(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not gzip at all")
    rgb = tmp_path / "rgb.nii"
    rgb_dtype = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), rgb_dtype), np.eye(4)), rgb)
    results = scan_paths(bad, rgb)
    assert all(isinstance(r, Skipped) and r.failed for r in results)
    assert str(bad) in results[0].path and "NIfTI" in results[0].reason
    assert "RGB" in results[1].reason


def test_nibabel_shipped_anatomical_image_loads():
    path = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    if not path.exists():
        pytest.skip("nibabel's test data is not installed")
    (info,) = scan_paths(path)
    volume = load(info).data
    assert volume.shape == info.shape and volume.dtype == np.float32
    assert volume.max() > 0
