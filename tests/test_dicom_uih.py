"""UIH 'VFRAME' (GRID) mosaics: DWI/fMRI files that tile a volume's slices in one image, with the
slice count in (0065,1050) and each slice's position in the (0065,1051) VFrame sequence, and no
top-level ImagePositionPatient (issue 16, item 1). Unpacked like Siemens mosaics, one volume per
file, as dcm2niix does (64 x 64 x 20 x 17 for 17 diffusion volumes of 20 slices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import dicom_factory as F
from kspacify.sources import Pseudonymizer, Skipped, VolumeInfo, discover, load, scan

PZ = Pseudonymizer(b"uih")
VFRAME_TYPE = ("ORIGINAL", "PRIMARY", "M", "VFRAME")


def grid_of(n: int) -> tuple[int, int]:
    across = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / across)), across


def write_vframe(path, stack, *, order=None, count=True, positions=True, series_uid=None, instance=1,
                 b_value=1000.0, manufacturer="UIH"):
    """One UIH VFRAME file of `stack` (slices, rows, cols): tiles row-major, ceil(sqrt(n)) across;
    tile k is the slice at z = 3 mm * order[k] (acquisition order may differ from position)."""
    n, rows, cols = stack.shape
    down, across = grid_of(n)
    order = list(range(n)) if order is None else order
    mosaic = np.zeros((down * rows, across * cols), np.uint16)
    for k in range(n):
        r, c = divmod(k, across)
        mosaic[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols] = stack[order[k]]
    ds = F.mr_dataset(mosaic, ipp=None, image_type=VFRAME_TYPE, manufacturer=manufacturer, series_uid=series_uid,
                      instance_number=instance, pixel_spacing=(3.5, 3.5), slice_thickness=3.0)
    block = ds.private_block(0x0065, "Image Private Header", create=True)
    block.add_new(0x09, "FD", b_value)  # BActualValue
    if count:
        block.add_new(0x50, "DS", str(n))
    if positions:
        items = []
        for k in range(n):
            item = Dataset()
            item.ImagePositionPatient = [-112.0, -112.0, -30.0 + 3.0 * order[k]]
            item.SliceLocation = -30.0 + 3.0 * order[k]
            items.append(item)
        block.add_new(0x51, "SQ", DicomSequence(items))
    return F.save(ds, path)


def scanned(directory):
    items = list(scan(discover([str(directory)]), PZ))
    return [i for i in items if isinstance(i, VolumeInfo)], [i for i in items if isinstance(i, Skipped)]


def test_diffusion_series_gives_one_volume_per_file(tmp_path):
    """17 files of 20 slices (a 5 x 4 grid of 64 x 64 tiles: 320 x 256 pixels)."""
    rng = np.random.default_rng(0)
    series, stacks = F.new_uid(), []
    for v in range(17):
        stacks.append(rng.integers(1, 4000, (20, 64, 64)).astype(np.uint16))
        write_vframe(tmp_path / f"IM{16 - v:04d}", stacks[-1], series_uid=series, instance=v + 1,
                     b_value=0.0 if v == 0 else 1000.0)
    vols, skips = scanned(tmp_path)
    assert not skips and len(vols) == 17
    vols.sort(key=lambda v: v.meta["volume_index"])
    for v, info in enumerate(vols):
        assert info.shape == (20, 64, 64) and info.spacing == pytest.approx((3.0, 3.5, 3.5))
        assert info.meta["mosaic_grid"] == 5 and info.meta["mosaic_grid_rows"] == 4
        assert info.meta["slice_order"] == "position" and info.name.endswith(f"_v{v + 1}")
        assert all(ref.native is not None for ref in info.slices)
        np.testing.assert_array_equal(load(info).data, stacks[v].astype(np.float32))


def test_interleaved_tiles_are_put_in_position_order(tmp_path):
    stack = np.random.default_rng(1).integers(1, 4000, (9, 8, 8)).astype(np.uint16)
    order = [0, 2, 4, 6, 8, 1, 3, 5, 7]  # interleaved acquisition: tile k holds slice order[k]
    write_vframe(tmp_path / "a.dcm", stack, order=order)
    (info,), skips = scanned(tmp_path)
    assert not skips and info.shape == (9, 8, 8) and "mosaic_grid_rows" not in info.meta  # 3 x 3
    np.testing.assert_array_equal(load(info).data, stack.astype(np.float32))


@pytest.mark.parametrize("what, words", [
    ({"positions": False}, "positions"),
    ({"count": False}, "number of slices"),
    ({"manufacturer": "ACME"}, "private block"),
])
def test_missing_slice_geometry_is_reported_not_stacked(tmp_path, what, words):
    """Before: such files were stacked as one volume of tile grids, by InstanceNumber, silently."""
    series = F.new_uid()
    for v in range(3):
        write_vframe(tmp_path / f"{v}.dcm", np.ones((4, 8, 8), np.uint16), series_uid=series, instance=v + 1, **what)
    vols, skips = scanned(tmp_path)
    assert not vols and len(skips) == 3
    assert all(s.failed and "VFRAME" in s.reason and words in s.reason for s in skips)
