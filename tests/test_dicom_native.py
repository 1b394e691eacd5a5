"""The fast native-pixel read gives exactly what pydicom's decoder gives."""

from dataclasses import replace

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

import dicom_factory as factory
from kspacify.sources import Pseudonymizer, VolumeInfo, discover, scan
from kspacify.sources.dicom import load_dicom


def scanned(directory):
    (info,) = [r for r in scan(discover([str(directory)]), Pseudonymizer(b"s")) if isinstance(r, VolumeInfo)]
    return info


def without_native(info):
    return replace(info, slices=tuple(replace(ref, native=None) for ref in info.slices))


@pytest.mark.parametrize(
    "dtype, bits_stored, signed, extra",
    [
        (np.uint16, 16, False, {}),
        (np.uint16, 12, False, {"rescale_slope": 2.5, "rescale_intercept": -100.0}),
        (np.int16, 12, True, {}),
        (np.uint8, 8, False, {"photometric": "MONOCHROME1"}),
    ],
)
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_native_read_equals_pydicom(tmp_path, dtype, bits_stored, signed, extra, syntax):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    volume = rng.integers(info.min, info.max, size=(3, 10, 14), endpoint=True).astype(dtype)  # high bits set too
    for path in factory.write_series(tmp_path, volume, **extra):
        ds = pydicom.dcmread(path)
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
    found = scanned(tmp_path)
    assert all(ref.native is not None for ref in found.slices)
    np.testing.assert_array_equal(load_dicom(found), load_dicom(without_native(found)))


def test_compressed_files_take_the_decoder_path(tmp_path):
    volume = np.arange(3 * 32 * 32, dtype=np.uint16).reshape(3, 32, 32)
    factory.write_series(tmp_path, volume, transfer_syntax=RLELossless)
    found = scanned(tmp_path)
    assert all(ref.native is None for ref in found.slices)
    assert load_dicom(found).shape == (3, 32, 32)


def test_manifest_round_trip_keeps_native_locations(tmp_path):
    factory.write_series(tmp_path, np.ones((2, 8, 8), np.uint16))
    found = scanned(tmp_path)
    assert VolumeInfo.from_json(found.to_json()) == found
