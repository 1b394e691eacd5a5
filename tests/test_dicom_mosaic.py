"""Siemens mosaics: each file's tiles are unpacked into one volume, in slice order, like dcm2niix."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import dicom_factory as F
import h5py
import nibabel
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from kspacify.cli import app
from kspacify.sources.base import Pseudonymizer, Skipped, VolumeInfo
from kspacify.sources.dicom import csa_values, header_of, load_dicom, mosaic_tiles, scan_dicom
from kspacify.sources.orientation import canonical_inplane

PZ = Pseudonymizer(b"test-salt")
MOSAIC_TYPE = ("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC")


def scan(paths):
    items = list(scan_dicom([Path(p) for p in paths], PZ))
    return [v for v in items if isinstance(v, VolumeInfo)], [s for s in items if isinstance(s, Skipped)]


def nibabel_dicomwrappers():
    """nibabel's DICOM reader (its import warns that it is experimental)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers
    return dicomwrappers


def tiles(n, rows, cols, seed=0):
    """`n` tiles whose values are all distinct (tile k holds k * 1000 + a permutation)."""
    rng = np.random.default_rng(seed)
    return np.stack([k * 1000 + rng.permutation(rows * cols).reshape(rows, cols) for k in range(n)])


def mosaic_of(stack):
    """Tile `stack` (n, rows, cols) row-major into a ceil(sqrt(n)) square grid, padding with zeros."""
    n, rows, cols = stack.shape
    grid = int(np.ceil(np.sqrt(n)))
    out = np.zeros((grid * rows, grid * cols), stack.dtype)
    for k in range(n):
        r, c = divmod(k, grid)
        out[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols] = stack[k]
    return out


def write_mosaic(path, stack, *, n_tag=True, csa_count=True, csa_normal=None, transfer_syntax="explicit", **kwargs):
    """A Siemens mosaic file of `stack`: NumberOfImagesInMosaic in (0019,100A) and/or the CSA header,
    SliceNormalVector in the CSA header if given."""
    kwargs.setdefault("ipp", (-100.0, -120.0, 40.0))
    kwargs.setdefault("pixel_spacing", (2.0, 1.5))
    kwargs.setdefault("spacing_between_slices", 4.0)
    kwargs.setdefault("manufacturer", "SIEMENS")
    ds = F.mr_dataset(mosaic_of(stack).astype(np.uint16), image_type=MOSAIC_TYPE, **kwargs)
    if n_tag:
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0A, "US", len(stack))
    csa = {}
    if csa_count:
        csa["NumberOfImagesInMosaic"] = [str(len(stack))]
    if csa_normal is not None:
        csa["SliceNormalVector"] = [f"{v:.8f}" for v in csa_normal]
    if csa:
        ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(0x10, "OB", F.csa2(csa))
    return F.save(ds, path, transfer_syntax)


# ------------------------------------------------------------------------------- synthetic files


@pytest.mark.parametrize("syntax", ["explicit", "rle"])
def test_tiles_become_slices_in_order(tmp_path, syntax):
    stack = tiles(5, 6, 4)  # 3 x 3 grid, 4 padding tiles
    path = write_mosaic(tmp_path / "m.dcm", stack, csa_normal=(0, 0, 1), transfer_syntax=syntax)
    (info,), skips = scan([path])
    assert not skips
    assert info.shape == (5, 6, 4) and info.spacing == (4.0, 2.0, 1.5)
    assert [ref.frame for ref in info.slices] == [0, 1, 2, 3, 4]
    assert (info.slices[0].native is not None) == (syntax == "explicit")  # uncompressed: the fast path
    assert info.meta["mosaic_grid"] == 3 and info.meta["slice_order"] == "position"
    assert "multi_frame" not in info.meta and "volume_index" not in info.meta
    np.testing.assert_array_equal(load_dicom(info), stack)


def test_descending_csa_normal_reverses_the_tiles(tmp_path):
    stack = tiles(4, 5, 5)
    (info,), _ = scan([write_mosaic(tmp_path / "m.dcm", stack, csa_normal=(0, 0, -1))])
    np.testing.assert_array_equal(load_dicom(info), stack[::-1])
    assert info.spacing[0] == 4.0


@pytest.mark.parametrize("n_tag,csa_count", [(True, False), (False, True)])
def test_count_from_siemens_header_or_csa(tmp_path, n_tag, csa_count):
    """Without a CSA slice normal the tiles ascend along row x column, as dcm2niix assumes."""
    stack = tiles(7, 4, 6)
    (info,), _ = scan([write_mosaic(tmp_path / "m.dcm", stack, n_tag=n_tag, csa_count=csa_count)])
    np.testing.assert_array_equal(load_dicom(info), stack)


def test_transposed_orientation_follows_the_canonical_rule(tmp_path):
    """Stored rows along +y and columns along -z (normal +x): canonical sagittal slices are the
    tiles transposed, and ordered along the canonical normal -x, so the tile order reverses."""
    iop = (0.0, 0.0, -1.0, 0.0, 1.0, 0.0)
    stack = tiles(5, 6, 4)
    (info,), _ = scan([write_mosaic(tmp_path / "m.dcm", stack, iop=iop)])
    assert info.meta["plane"] == "sagittal" and info.meta["inplane_transform"]["transpose"]
    assert info.shape == (5, 4, 6) and info.spacing == (4.0, 1.5, 2.0)
    np.testing.assert_array_equal(load_dicom(info), stack[::-1].transpose(0, 2, 1))


def test_rescale_and_monochrome1(tmp_path):
    stack = tiles(4, 4, 4)
    scaled = write_mosaic(tmp_path / "a.dcm", stack, rescale_slope=2.0, rescale_intercept=-10.0)
    inverted = write_mosaic(tmp_path / "b.dcm", stack, photometric="MONOCHROME1")
    vols, _ = scan([scaled, inverted])
    by_file = {Path(v.slices[0].path).name: load_dicom(v) for v in vols}
    np.testing.assert_array_equal(by_file["a.dcm"], stack * 2.0 - 10.0)
    np.testing.assert_array_equal(by_file["b.dcm"], stack.max() + stack.min() - stack)


def test_first_slice_position_matches_nibabel(tmp_path):
    """The mosaic's ImagePositionPatient is corrected to the first tile's corner, nibabel's way,
    and the tiles step along the CSA slice normal."""
    iop = (0.96, 0.28, 0.0, 0.224, -0.768, -0.6)
    normal = -np.cross(iop[:3], iop[3:])  # descending
    path = write_mosaic(tmp_path / "m.dcm", tiles(10, 8, 6), iop=iop, csa_normal=normal)
    grid, positions = mosaic_tiles(header_of(path), 32, 24)
    dicomwrappers = nibabel_dicomwrappers()
    wrapper = dicomwrappers.MosaicWrapper(pydicom.dcmread(path))  # reads our CSA header
    assert grid == 4 and len(positions) == 10 and wrapper.n_mosaic == 10
    expected = wrapper.image_position + np.outer(np.arange(10) * 4.0, wrapper.slice_normal)
    np.testing.assert_allclose(positions, expected, atol=1e-6)


def test_each_mosaic_file_is_its_own_volume(tmp_path):
    """A series of mosaics (time points, diffusion directions) gives one volume per file, in
    acquisition order, even when prospective motion correction moved the slices a little."""
    series = F.new_uid()
    stacks = [tiles(4, 4, 4, seed=s) for s in range(3)]
    paths = [
        write_mosaic(tmp_path / f"{name}.dcm", stacks[i], series_uid=series, instance_number=i + 1,
                     acquisition_number=i + 1, ipp=(-100.0, -120.0, 40.0 + 0.3 * i))
        for i, name in enumerate(["c", "a", "b"])
    ]
    vols, skips = scan(paths)
    assert not skips and len(vols) == 3
    vols.sort(key=lambda v: v.meta["volume_index"])
    for i, info in enumerate(vols):
        assert info.name.endswith(f"_v{i + 1}") and info.meta["split_by"] == ["volume"]
        assert {ref.path for ref in info.slices} == {str(paths[i])}
        np.testing.assert_array_equal(load_dicom(info), stacks[i])
    assert len({v.name for v in vols}) == 3


def test_mosaics_of_different_layouts_in_one_series_are_not_mixed(tmp_path):
    series = F.new_uid()
    small, large = tiles(4, 4, 4), tiles(9, 4, 4, seed=1)  # 2 x 2 and 3 x 3 tiles of the same size
    vols, _ = scan([write_mosaic(tmp_path / "a.dcm", small, series_uid=series, instance_number=1),
                    write_mosaic(tmp_path / "b.dcm", large, series_uid=series, instance_number=2)])
    by_file = {Path(v.slices[0].path).name: load_dicom(v) for v in vols}
    np.testing.assert_array_equal(by_file["a.dcm"], small)
    np.testing.assert_array_equal(by_file["b.dcm"], large)


def test_inconsistent_mosaics_are_reported(tmp_path):
    stack = tiles(4, 4, 4)
    no_count = write_mosaic(tmp_path / "no_count.dcm", stack, n_tag=False, csa_count=False)
    ds = pydicom.dcmread(write_mosaic(tmp_path / "bad_grid.dcm", stack))
    ds[0x0019100A].value = 5  # 3 x 3 tiles do not fit in 8 x 8 pixels
    ds.save_as(tmp_path / "bad_grid.dcm")
    vols, skips = scan([no_count, tmp_path / "bad_grid.dcm"])
    assert not vols
    reasons = {Path(s.path).name: s for s in skips}
    assert reasons["no_count.dcm"].failed and "NumberOfImagesInMosaic" in reasons["no_count.dcm"].reason
    assert reasons["bad_grid.dcm"].failed and "3x3 tiles" in reasons["bad_grid.dcm"].reason


def test_convert_writes_a_mosaic_volume_without_phi(tmp_path):
    stack = tiles(5, 32, 32).astype(np.uint16) % 4000
    path = write_mosaic(tmp_path / "in" / "mosaic.dcm", stack, csa_normal=(0, 0, 1))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(out), "--phase", "smooth",
                                      "--salt", "pepper"])
    assert result.exit_code == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stdout.splitlines() if text.strip()]
    assert line["slices"] == 5
    (output,) = out.glob("*.h5")
    with h5py.File(output) as f:
        assert f["kspace"].shape[0] == 5
        text = "\n".join(f"{k}={f.attrs[k]}" for k in f.attrs) + f["ismrmrd_header"][()].decode()
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    secrets = set(F.PHI_VALUES) | {str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)}
    for secret in secrets:
        assert secret not in text and secret not in output.name and secret not in result.stdout
        if len(secret) >= 8:
            assert secret.encode() not in output.read_bytes()


# ------------------------------------------------------------------------- real Siemens headers

NIBABEL_DATA = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"


def nibabel_file(name, tmp_path):
    if not (NIBABEL_DATA / name).exists():
        pytest.skip("nibabel's DICOM test files are not installed")
    if name.endswith(".gz"):
        out = tmp_path / name[:-3]
        out.write_bytes(gzip.decompress((NIBABEL_DATA / name).read_bytes()))
        return out
    return NIBABEL_DATA / name


def test_nibabel_mosaic_pixels_match_nibabel(tmp_path):
    """nibabel's 0.dcm (Siemens DWI header, a ramp as pixels) claims 48 images in a 256 x 256 mosaic,
    which no 7 x 7 grid fits: it is reported. Declaring 16 images (4 x 4 tiles of 64 x 64), the
    slices equal nibabel's unpacking, brought to the canonical orientation and slice order."""
    original = nibabel_file("0.dcm", tmp_path)
    vols, (skip,) = scan([original])
    assert not vols and skip.failed and "mosaic" in skip.reason.lower()
    ds = pydicom.dcmread(original)
    ds[0x0019100A].value = 16
    ds.save_as(tmp_path / "16.dcm")
    (info,), skips = scan([tmp_path / "16.dcm"])
    assert not skips and info.shape == (16, 64, 64) and info.spacing[0] == pytest.approx(3.0)
    dicomwrappers = nibabel_dicomwrappers()
    wrapper = dicomwrappers.MosaicWrapper(ds, n_mosaic=16)
    reference = np.moveaxis(wrapper.get_data(), -1, 0)  # (slices, rows, cols) in tile order
    iop = np.asarray(ds.ImageOrientationPatient, float)
    inplane = canonical_inplane(iop[:3], iop[3:])
    if np.dot(wrapper.slice_normal, inplane.normal) < 0:
        reference = reference[::-1]
    assert np.ptp(reference) > 0
    np.testing.assert_array_equal(load_dicom(info), inplane.apply(reference))
    grid, positions = mosaic_tiles(header_of(tmp_path / "16.dcm"), 256, 256)
    np.testing.assert_allclose(positions[0], wrapper.image_position, atol=1e-6)


def test_nibabel_dwi_series_gives_one_volume_per_direction(tmp_path):
    """nibabel's full-size Siemens DWI mosaics (b=0 and b=1000, one series, pixels blanked): two
    volumes of 48 slices of 128 x 128, never mixed, positioned as nibabel positions them."""
    paths = [nibabel_file(name, tmp_path) for name in ("siemens_dwi_1000.dcm.gz", "siemens_dwi_0.dcm.gz")]
    vols, skips = scan(paths)
    assert not skips and len(vols) == 2
    vols.sort(key=lambda v: v.meta["volume_index"])
    dicomwrappers = nibabel_dicomwrappers()
    for info, path in zip(vols, paths[::-1]):  # instance 1 is b=0
        assert info.shape == (48, 128, 128) and {ref.path for ref in info.slices} == {str(path)}
        assert [ref.frame for ref in info.slices] == list(range(48))  # ascending tiles, axial
        assert load_dicom(info).shape == info.shape
        wrapper = dicomwrappers.wrapper_from_file(path)
        grid, positions = mosaic_tiles(header_of(path), 896, 896)
        expected = wrapper.image_position + np.outer(np.arange(48) * 3.0, wrapper.slice_normal)
        np.testing.assert_allclose(positions, expected, atol=1e-4)


def test_count_and_oblique_normal_from_a_real_csa_header(tmp_path):
    """nibabel's csa_slice_norm.dcm: its (0019) block is anonymised, so the count (32) comes from the
    CSA header, and its oblique slice normal matches nibabel's."""
    path = nibabel_file("csa_slice_norm.dcm", tmp_path)
    grid, positions = mosaic_tiles(header_of(path), 384, 384)
    dicomwrappers = nibabel_dicomwrappers()
    wrapper = dicomwrappers.wrapper_from_file(path)
    assert grid == 6 and len(positions) == 32
    step = float(pydicom.dcmread(path, stop_before_pixels=True).SpacingBetweenSlices)
    expected = wrapper.image_position + np.outer(np.arange(32) * step, wrapper.slice_normal)
    np.testing.assert_allclose(positions, expected, atol=1e-4)


@pytest.mark.parametrize("name", ["csa2_b0.bin", "csa2_b1000.bin", "csa_slice_norm.dcm"])
def test_csa_reader_agrees_with_nibabel(name, tmp_path):
    """Our CSA2 reader (kept for speed, see `vendor.csa_values`) gives nibabel's csareader values
    for every element of real Siemens headers, and nothing for damaged or foreign blobs."""
    from nibabel.nicom import csareader

    path = nibabel_file(name, tmp_path)
    blob = pydicom.dcmread(path)[0x00291010].value if name.endswith(".dcm") else path.read_bytes()
    theirs = csareader.read(blob)["tags"]
    ours = csa_values(blob, set(theirs))
    assert set(ours) == set(theirs) and len(ours) > 50
    for key, tag in theirs.items():
        assert [float(v) if tag["vr"] in ("FD", "FL", "DS", "IS", "SL", "UL", "US", "SS") else v
                for v in ours[key]] == [v for v in tag["items"] if v != ""], key
    assert csa_values(blob[:len(blob) // 2], {"SliceNormalVector"}) in ({}, {"SliceNormalVector": ours["SliceNormalVector"]})
    assert csa_values(b"SV10" + b"\xff" * 12, {"SliceNormalVector"}) == {}
    assert csa_values(b"not a csa header", {"SliceNormalVector"}) == {}


def test_a_mosaic_without_its_geometry_keeps_its_tile_order_and_says_so(tmp_path):
    from kspacify.sources import check

    stack = tiles(4, 5, 5)
    path = write_mosaic(tmp_path / "m.dcm", stack, ipp=None)
    (info,), _ = scan([path])
    assert info.meta["slice_order"] == "mosaic_tile" and [ref.frame for ref in info.slices] == [0, 1, 2, 3]
    np.testing.assert_array_equal(load_dicom(info), stack)
    assert check(info).meta["notes"] == ["no usable slice positions or orientation: slices ordered by their tiles in the mosaic"]
