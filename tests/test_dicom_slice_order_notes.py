"""A DICOM volume whose slices are not ordered by their positions says so: one note, on stderr, in
the stdout line and in the file's `notes`, once also through a manifest (which is checked again)."""

from __future__ import annotations

import json

import dicom_factory as F
import h5py
import numpy as np
import pydicom
from corpus import cli

VOLUME = (np.arange(4 * 8 * 8).reshape(4, 8, 8) % 50 + 10).astype(np.uint16)
ORDERED = "no usable slice positions or orientation: slices ordered by instance number"


def test_a_series_without_positions_ordered_by_instance_number_says_so(tmp_path):
    paths = F.write_series(tmp_path / "s", VOLUME, scramble_instances=False)
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    run = cli("convert", tmp_path / "s", tmp_path / "out", "--size", "8", "--phase", "zero", "--salt", "x")
    assert run.exit == 0, run.stderr
    assert run.stderr.count(f"note: {tmp_path / 's'}: {ORDERED}") == 1
    (record,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["notes"] == [ORDERED]
    with h5py.File(record["output"]) as handle:
        assert json.loads(handle.attrs["notes"]) == [ORDERED]
    scanned = cli("scan", tmp_path / "s", "--salt", "x")
    (tmp_path / "manifest.jsonl").write_text(scanned.stdout)
    again = cli("convert", "--manifest", tmp_path / "manifest.jsonl", tmp_path / "again", "--size", "8", "--phase", "zero",
                "--salt", "x")  # fmt: skip
    assert again.exit == 0 and again.stderr.count(ORDERED) == 1
    assert json.loads(again.stdout)["notes"] == [ORDERED]


def test_slices_in_instance_order_are_in_that_order(tmp_path):
    paths = F.write_series(tmp_path / "s", VOLUME, scramble_instances=True, shuffle=True)
    instances = {}
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        instances[int(ds.InstanceNumber)] = index
        del ds.ImagePositionPatient
        ds.save_as(path)
    from kspacify.sources import Pseudonymizer, discover, load, scan

    (info,) = [v for v in scan(discover([str(tmp_path / "s")]), Pseudonymizer(b"x")) if hasattr(v, "slices")]
    expected = VOLUME[[instances[n] for n in sorted(instances)]]
    np.testing.assert_array_equal(load(info).data, expected.astype(np.float32))
    assert info.meta["notes"] == [ORDERED]
