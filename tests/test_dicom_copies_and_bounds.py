"""Copies of one image (one SOP Instance UID in several files), and what a header may claim: frame
counts bounded by the pixel data, deflated files inflated with a bound (the fault corpus holds the
hostile cases; these are the ordinary ones beside them)."""

from __future__ import annotations

import gzip
from pathlib import Path

import dicom_factory as F
import numpy as np
import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from kspacify.sources import Pseudonymizer, Skipped, VolumeInfo, discover, load, scan
from kspacify.sources.dicom.header import DEFLATE_SLACK, open_dicom

PZ = Pseudonymizer(b"copies")
VOLUME = (np.arange(4 * 16 * 16).reshape(4, 16, 16) % 199 + 5).astype(np.uint16)


def scanned(*inputs) -> tuple[list[VolumeInfo], list[Skipped]]:
    items = list(scan(discover([str(i) for i in inputs]), PZ))
    return [i for i in items if isinstance(i, VolumeInfo)], [i for i in items if isinstance(i, Skipped)]


def test_a_copy_encoded_otherwise_is_the_same_image_not_a_conflict(tmp_path):
    paths = F.write_series(tmp_path / "valid", VOLUME)
    (tmp_path / "0_rle").mkdir()
    ds = pydicom.dcmread(paths[0])
    ds.compress(RLELossless, generate_instance_uid=False)  # another encoding of the same pixels
    ds.save_as(tmp_path / "0_rle" / "copy.dcm")
    (volume,), skips = scanned(tmp_path)
    assert volume.shape == (4, 16, 16)
    (skip,) = skips
    assert not skip.failed and "duplicate copy" in skip.reason
    np.testing.assert_array_equal(load(volume).data, VOLUME.astype(np.float32))


def test_of_conflicting_copies_the_one_fitting_its_series_is_used_whatever_the_order(tmp_path):
    paths = F.write_series(tmp_path / "valid", VOLUME)
    ds = pydicom.dcmread(paths[2])
    ds.PixelData = (VOLUME[2] + 1).astype("<u2").tobytes()  # the same UID and geometry, other pixels
    (tmp_path / "0_first").mkdir()
    ds.save_as(tmp_path / "0_first" / "other.dcm")
    (volume,), skips = scanned(tmp_path)
    (skip,) = skips
    # both fit the series equally well: the first met is used, the other is named
    assert skip.failed and "conflicting copy" in skip.reason and skip.path == str(paths[2])
    assert volume.shape == (4, 16, 16)


def test_identical_copies_are_hashed_only_when_their_sizes_agree(tmp_path, monkeypatch):
    from kspacify.sources.dicom import scan as scan_module

    paths = F.write_series(tmp_path / "a", VOLUME)
    (tmp_path / "b").mkdir()
    for path in paths:
        (tmp_path / "b" / path.name).write_bytes(path.read_bytes())
    hashed = []
    real = scan_module._file_digest
    monkeypatch.setattr(scan_module, "_file_digest", lambda path: hashed.append(path) or real(path))
    F.write_series(tmp_path / "c", VOLUME)  # other UIDs: never compared
    vols, skips = scanned(tmp_path)
    assert len(vols) == 2 and len(skips) == 4 and all("duplicate copy" in s.reason and not s.failed for s in skips)
    assert len(hashed) == 8 and not any("/c/" in p for p in hashed)


def _deflated(path: Path, pixels: np.ndarray, z: float, trailing: int = 0) -> Path:
    ds = F.mr_dataset(pixels, ipp=(0.0, 0.0, 2.0 * z), instance_number=int(z) + 1, series_uid=SERIES,
                      study_uid=STUDY)  # fmt: skip
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    if trailing:
        ds.add_new(0x7FE10010, "LO", "XX")
        ds.add_new(0x7FE11000, "OB", bytes(trailing))  # after the pixels, zeros: deflate to nothing
    ds.save_as(path, enforce_file_format=True)
    return path


SERIES, STUDY = F.new_uid(), F.new_uid()


def test_deflated_files_are_read_through_a_bounded_inflate(tmp_path):
    paths = [_deflated(tmp_path / f"d{z}.dcm", VOLUME[z], z) for z in range(4)]
    fh, size = open_dicom(paths[0])
    assert getattr(fh, "deflated", False) and size > paths[0].stat().st_size
    gz = tmp_path / "gz"
    gz.mkdir()
    (volume,), skips = scanned(*paths)
    assert not skips and volume.meta["transfer_syntax"] == "Deflated Explicit VR Little Endian"
    assert all(ref.native is None for ref in volume.slices)  # offsets would be into the inflated stream
    np.testing.assert_array_equal(load(volume).data, VOLUME.astype(np.float32))
    for path in paths:  # gzipped as well
        (gz / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    (volume,), skips = scanned(gz)
    assert not skips
    np.testing.assert_array_equal(load(volume).data, VOLUME.astype(np.float32))


def test_a_deflated_file_may_carry_a_little_after_its_pixels_not_more(tmp_path):
    ok = _deflated(tmp_path / "ok.dcm", VOLUME[0], 0, trailing=DEFLATE_SLACK // 2)
    big = _deflated(tmp_path / "big.dcm", VOLUME[1], 1, trailing=4 * DEFLATE_SLACK)
    vols, skips = scanned(ok, big)
    assert [v.files for v in vols] == [(str(ok),)]
    (skip,) = skips
    assert skip.path == str(big) and skip.failed and "inflates to more than" in skip.reason


def test_compressed_enhanced_mr_frame_count_is_bounded_by_its_fragments(tmp_path):
    path = F.write_enhanced_mr(tmp_path / "e.dcm", VOLUME[:2], positions=[(0, 0, 0), (0, 0, 2)], transfer_syntax="rle")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 40
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(path)
    vols, (skip,) = scanned(path)
    assert not vols and skip.failed and "header claims 40 images" in skip.reason and "2 fragment" in skip.reason
