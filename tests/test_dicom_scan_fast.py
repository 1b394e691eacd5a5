"""The scan's one-pass header decoding (`Header`) gives exactly the values `Dataset.get` gives."""

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.hooks import hooks, raw_element_value_fix_separator
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicom_factory as factory
from kspacify.sources.dicom import KEYWORDS, SCAN_TAGS, header_of
from kspacify.sources.dicom.header import get, quiet

# raw values pydicom reads leniently or not at all
ODD = {
    "InstanceNumber": b"1.5 ", "EchoNumbers": b"2.0 ", "EchoTime": b"abc ", "SliceThickness": b"",
    "RepetitionTime": b"nan ", "FlipAngle": b"1e400 ", "PixelSpacing": b"0.9\\x ", "ImagePositionPatient": b"1\\2 ",
}


def set_raw(ds, keyword, value):
    tag = Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def classic(path, syntax, odd=None):
    ds = factory.mr_dataset(np.arange(64, dtype=np.uint16).reshape(8, 8), manufacturer="GE MEDICAL SYSTEMS",
                            rescale_slope=1.5, rescale_intercept=-3.0, complex_component="MAGNITUDE",
                            extra={"SpecificCharacterSet": "ISO_IR 100", "SeriesDescription": "Ax T1 Kopf Ü",
                                   "ProtocolName": "t1", "NumberOfFrames": 1})
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", 1)
    if odd:
        set_raw(ds, *odd)
    if syntax == ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
        return path
    return factory.save(ds, path, syntax)


def assert_same_values(path):
    header = header_of(path)
    with quiet():
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=SCAN_TAGS)
        for tag in SCAN_TAGS:
            key = KEYWORDS[tag]
            if isinstance(key, str):
                expected = get(ds, key)
            else:
                elem = ds.get(tag)
                expected = None if elem is None else elem.value
            got = header.get(key)
            assert (type(got), repr(got)) == (type(expected), repr(expected)), key
    return header


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, "rle"])
def test_header_values_equal_dataset_get(tmp_path, syntax):
    header = assert_same_values(classic(tmp_path / "a.dcm", syntax))
    assert header["SeriesDescription"] == "Ax T1 Kopf Ü" and header[0x0043102F] in (1, b"\x01\x00")


@pytest.mark.filterwarnings("ignore:.*(VR IS|VR of IS):UserWarning")  # pydicom, writing the odd values
@pytest.mark.parametrize("odd", sorted(ODD.items()))
def test_odd_values_equal_dataset_get(tmp_path, odd):
    assert_same_values(classic(tmp_path / "a.dcm", ExplicitVRLittleEndian, odd))


def test_enhanced_mr_values_equal_dataset_get(tmp_path):
    path = factory.write_enhanced_mr(tmp_path / "e.dcm", np.ones((3, 8, 8), np.uint16),
                                     positions=[(0, 0, z) for z in range(3)])
    header = assert_same_values(path)
    assert len(header["PerFrameFunctionalGroupsSequence"]) == 3


def test_customised_pydicom_hooks_are_honoured(tmp_path, monkeypatch):
    """A registered value hook (here: ',' as value separator) must see every element, as in ds.get."""
    def comma_separated(raw, data, **kwargs):
        raw_element_value_fix_separator(raw, data, target_VRs=("DS",), **kwargs)

    path = classic(tmp_path / "a.dcm", ExplicitVRLittleEndian, ("PixelSpacing", b"0.5,0.7 "))
    monkeypatch.setattr(hooks, "raw_element_value", comma_separated)
    header = assert_same_values(path)
    assert [float(v) for v in header["PixelSpacing"]] == [0.5, 0.7]
