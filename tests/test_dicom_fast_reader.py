"""The fast header reader (`header.FAST_READER`) gives exactly what pydicom's own reading gives,
for every file: plain ones it reads itself, anything unusual or damaged it leaves to pydicom."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ImplicitVRLittleEndian

import dicom_factory as F
from kspacify.sources.base import Pseudonymizer
from kspacify.sources.dicom import header, scan_dicom

PZ = Pseudonymizer(b"fast")
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def scan_both(paths, monkeypatch, each=False):
    """Scan results with the fast reader, then with pydicom reading every header; `each`: every
    file on its own (copies of one file would otherwise be skipped as duplicates)."""
    def run():
        if each:
            return [list(scan_dicom([Path(p)], PZ)) for p in paths]
        return list(scan_dicom([Path(p) for p in paths], PZ))

    fast = run()
    monkeypatch.setattr(header, "FAST_READER", False)
    slow = run()
    monkeypatch.setattr(header, "FAST_READER", True)
    return fast, slow


def vendor_file(path: Path, implicit: bool = False) -> Path:
    """A slice with the things the fast reader must step over: private blocks, nested
    undefined-length sequences, an odd-length private value, a CSA header."""
    ds = F.mr_dataset(np.arange(64, dtype=np.uint16).reshape(8, 8), manufacturer="GE MEDICAL SYSTEMS",
                      extra={"SpecificCharacterSet": "ISO_IR 100", "SeriesDescription": "Kopf Ü"})
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = F.new_uid()
    inner.ImagePositionPatient = [9.0, 9.0, 9.0]  # nested: must not be read as the top-level one
    outer = Dataset()
    outer.ReferencedImageSequence = DicomSequence([inner, Dataset()])
    ds.SourceImageSequence = DicomSequence([outer])
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", 0)
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    for e in range(0x10, 0x40):
        block.add_new(e, "DS", str(e))
    ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(0x10, "OB", F.csa2({"A": ["1"]}))
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
        return path
    return F.save(ds, path)


def corpus(tmp_path: Path) -> list[Path]:
    files = [vendor_file(tmp_path / "vendor.dcm"), vendor_file(tmp_path / "vendor_implicit.dcm", implicit=True)]
    files += F.write_series(tmp_path / "plain", np.ones((3, 6, 6), np.uint16))
    files += F.write_series(tmp_path / "rle", np.ones((2, 8, 8), np.uint16), transfer_syntax="rle")
    files.append(F.write_enhanced_mr(tmp_path / "enh.dcm", np.ones((3, 4, 4), np.uint16),
                                     positions=[(0, 0, z) for z in range(3)]))
    files += [F.write_non_image(tmp_path / f"{k}.dcm", k) for k in ("sr", "no_pixels", "dicomdir")]
    files += [p for p in sorted(PYDICOM_FILES.glob("*.dcm"))[:60]]
    return files


def test_same_scan_as_pydicom_reading(tmp_path, monkeypatch):
    fast, slow = scan_both(corpus(tmp_path), monkeypatch)
    assert fast == slow and len(fast) > 40


def test_plain_files_are_read_without_pydicom_parsing_them(tmp_path, monkeypatch):
    """What makes the header pass fast: pydicom's reader is not called for plain files."""
    paths = F.write_series(tmp_path, np.ones((3, 6, 6), np.uint16)) + [vendor_file(tmp_path / "v.dcm")]

    def refuse(*args, **kwargs):
        raise AssertionError("pydicom.dcmread called")

    monkeypatch.setattr(pydicom, "dcmread", refuse)
    items = list(scan_dicom(paths, PZ))
    assert [type(i).__name__ for i in items] == ["VolumeInfo", "VolumeInfo"]


@pytest.mark.parametrize("seed", range(3))
def test_cut_and_damaged_files_give_what_pydicom_gives(tmp_path, monkeypatch, seed):
    """Every cut point and random damage of a vendor file: the same Skipped or volume either
    way, and never an exception (hostile files are reported, not raised)."""
    source = vendor_file(tmp_path / "src.dcm", implicit=bool(seed % 2)).read_bytes()
    rng = random.Random(seed)
    paths = []
    for i, cut in enumerate(range(130, len(source), 37 + seed)):
        path = tmp_path / f"cut{i:04d}.dcm"
        path.write_bytes(source[:cut])
        paths.append(path)
    for i in range(40):
        data = bytearray(source)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(132, len(data))] = rng.randrange(256)
        path = tmp_path / f"damaged{i:03d}.dcm"
        path.write_bytes(bytes(data))
        paths.append(path)
    fast, slow = scan_both(paths, monkeypatch, each=True)
    assert fast == slow
    kinds = {type(items[-1]).__name__ for items in fast}
    assert kinds == {"VolumeInfo", "Skipped"}  # both outcomes were exercised
