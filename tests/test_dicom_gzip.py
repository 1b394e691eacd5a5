"""Gzipped DICOM (`.dcm.gz`, a PACS export habit) is read like the plain file, header and pixels."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

import dicom_factory as F
from kspacify.sources import Pseudonymizer, Skipped, VolumeInfo, discover, load, scan

PZ = Pseudonymizer(b"gz")


def scanned(*inputs):
    items = list(scan(discover([str(i) for i in inputs]), PZ))
    return [i for i in items if isinstance(i, VolumeInfo)], [i for i in items if isinstance(i, Skipped)]


def gzip_all(paths, suffix=".gz"):
    out = []
    for path in paths:
        target = path.with_name(path.name + suffix)
        target.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        out.append(target)
    return out


def test_gzipped_series_equals_the_plain_one(tmp_path):
    volume = np.random.default_rng(0).integers(0, 4000, (4, 8, 10)).astype(np.uint16)
    F.write_series(tmp_path / "plain", volume, seed=2)
    gzip_all(F.write_series(tmp_path / "gz", volume, seed=2))
    (plain,), _ = scanned(tmp_path / "plain")
    (packed,), skips = scanned(tmp_path / "gz")
    assert not skips and packed.shape == plain.shape and packed.spacing == plain.spacing
    assert all(ref.path.endswith(".dcm.gz") and ref.native is not None for ref in packed.slices)
    np.testing.assert_array_equal(load(packed).data, volume.astype(np.float32))


def test_gzipped_compressed_and_unnamed_files(tmp_path):
    """RLE inside gzip goes through pydicom's decoder; a gzip without a DICOM-like name is
    recognised by its inflated 'DICM' marker."""
    volume = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
    paths = F.write_series(tmp_path / "rle", volume, transfer_syntax="rle")
    for i, path in enumerate(paths):
        (tmp_path / "rle" / f"slice{i}").write_bytes(gzip.compress(path.read_bytes()))  # no suffix at all
        path.unlink()
    (info,), skips = scanned(tmp_path / "rle")
    assert not skips and all(ref.native is None for ref in info.slices)
    np.testing.assert_array_equal(load(info).data, volume.astype(np.float32))


def test_gzip_that_is_not_dicom_or_is_damaged_is_reported(tmp_path):
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b"hello " * 100))
    good = F.write_mr(tmp_path / "x.dcm", np.ones((4, 4), np.uint16))
    data = gzip.compress(good.read_bytes())
    good.unlink()
    (tmp_path / "cut.dcm.gz").write_bytes(data[: len(data) // 2])
    vols, skips = scanned(tmp_path)
    assert not vols
    by_name = {Path(s.path).name: s for s in skips}
    assert not by_name["notes.txt.gz"].failed and "gzip" in by_name["notes.txt.gz"].reason
    assert by_name["cut.dcm.gz"].failed and "gzip" in by_name["cut.dcm.gz"].reason
