"""DICOM reader: grouping, ordering, orientation, pixel decoding, skipping and PHI hygiene."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import dicom_factory as F
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless

from kspacify.sources.base import Pseudonymizer, Skipped, SourceError, VolumeInfo
from kspacify.sources.dicom import CODECS_FIX, load_dicom, looks_like_dicom, scan_dicom

PZ = Pseudonymizer(b"test-salt")
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def scan(paths, **kw):
    items = list(scan_dicom([Path(p) for p in paths], PZ, **kw))
    vols = [v for v in items if isinstance(v, VolumeInfo)]
    skips = [s for s in items if isinstance(s, Skipped)]
    return vols, skips


def ramp(shape, seed=0, high=3000, dtype=np.uint16):
    """Distinct values everywhere, so any flip, transpose or reordering shows."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape).astype(np.int64) % high + 1


# ------------------------------------------------------------------------------------ detection


def test_looks_like_dicom(tmp_path):
    f = F.write_mr(tmp_path / "noext", np.zeros((4, 4), np.uint16))
    assert looks_like_dicom(f)
    (tmp_path / "x.IMA").write_bytes(b"")
    assert looks_like_dicom(tmp_path / "x.IMA")
    (tmp_path / "notes.txt").write_text("hello " * 50)
    assert not looks_like_dicom(tmp_path / "notes.txt")
    assert not looks_like_dicom(tmp_path / "missing")


# ----------------------------------------------------------------------------- order, geometry


def test_slices_ordered_by_position_not_names_or_instance_numbers(tmp_path):
    vol = ramp((6, 8, 10)).astype(np.uint16)
    F.write_series(tmp_path, vol, orientation="axial", spacing=(2.5, 0.5, 0.75), shuffle=True,
                   scramble_instances=True, seed=3)
    vols, skips = scan(sorted(tmp_path.iterdir()))
    assert not skips and len(vols) == 1
    info = vols[0]
    assert info.source_kind == "dicom"
    assert info.shape == (6, 8, 10)
    assert info.spacing == pytest.approx((2.5, 0.5, 0.75))
    assert info.meta["plane"] == "axial" and info.meta["slice_order"] == "position"
    assert info.meta["uniform_slice_spacing"] is True
    data = load_dicom(info)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, vol.astype(np.float32))
    # order of the input paths does not matter for anything in the result
    again, _ = scan(sorted(tmp_path.iterdir(), reverse=True))
    assert again[0] == info


def test_name_key_patient_and_no_phi(tmp_path):
    F.write_series(tmp_path, ramp((3, 4, 4)).astype(np.uint16), series_number=7)
    (info,), _ = scan(tmp_path.iterdir())
    assert re.fullmatch(r"s007_[0-9a-f]{8}", info.name)
    assert info.patient == PZ("PHI-12345")
    assert len(info.key) == 64
    other_salt = list(scan_dicom(tmp_path.iterdir(), Pseudonymizer(b"other")))[0]
    assert other_salt.key == info.key and other_salt.name != info.name
    text = json.dumps({**info.to_json(), "slices": None})  # file paths are the user's own
    for value in F.PHI_VALUES:
        assert value not in text, value
    assert F.UID_ROOT not in text and "1.2.840" not in text
    ds = pydicom.dcmread(info.slices[0].path, stop_before_pixels=True)
    assert str(ds.SeriesInstanceUID) not in text
    assert VolumeInfo.from_json(json.loads(json.dumps(info.to_json()))) == info


# Stored orientation -> expected canonical array from the stored volume (slice i at origin + i*step*
# (row x col)). Worked out by hand from the canonical display rules in orientation.py.
ORIENTATION_CASES = {
    "axial-canonical": ((1, 0, 0, 0, 1, 0), "axial", lambda v: v, False),
    "axial-flipped-cols": ((-1, 0, 0, 0, 1, 0), "axial", lambda v: v[::-1, :, ::-1], False),
    "axial-upside-down": ((1, 0, 0, 0, -1, 0), "axial", lambda v: v[::-1, ::-1, :], False),
    "coronal": ((1, 0, 0, 0, 0, -1), "coronal", lambda v: v, False),
    "sagittal": ((0, 1, 0, 0, 0, -1), "sagittal", lambda v: v, False),
    "sagittal-transposed": ((0, 0, -1, 0, 1, 0), "sagittal", lambda v: v.transpose(0, 2, 1)[::-1], True),
}


@pytest.mark.parametrize("case", sorted(ORIENTATION_CASES))
def test_canonical_orientation(tmp_path, case):
    iop, plane, expect, transposed = ORIENTATION_CASES[case]
    vol = ramp((4, 6, 9)).astype(np.uint16)
    F.write_series(tmp_path, vol, orientation=iop, spacing=(3.0, 0.5, 0.8))
    (info,), _ = scan(tmp_path.iterdir())
    assert info.meta["plane"] == plane
    expected = expect(vol)
    assert info.shape == expected.shape
    assert info.spacing == pytest.approx((3.0, 0.8, 0.5) if transposed else (3.0, 0.5, 0.8))
    np.testing.assert_array_equal(load_dicom(info), expected.astype(np.float32))


def test_nonuniform_gap_kept_and_noted(tmp_path):
    vol = ramp((5, 4, 4)).astype(np.uint16)
    paths = F.write_series(tmp_path, vol, spacing=(2.0, 1.0, 1.0))
    paths[2].unlink()  # a missing slice
    (info,), _ = scan(tmp_path.iterdir())
    assert info.shape[0] == 4
    assert info.spacing[0] == pytest.approx(2.0)  # median gap
    assert info.meta["uniform_slice_spacing"] is False
    assert info.meta["slice_gap_range_mm"] == [2.0, 4.0]
    np.testing.assert_array_equal(load_dicom(info), vol[[0, 1, 3, 4]].astype(np.float32))


def test_instance_number_fallback_without_positions(tmp_path):
    vol = ramp((4, 4, 4)).astype(np.uint16)
    uid = F.new_uid()
    for i, name in enumerate(["c", "a", "d", "b"]):
        F.write_mr(tmp_path / f"{name}.dcm", vol[i], ipp=None, instance_number=10 + i, series_uid=uid,
                   slice_thickness=None, spacing_between_slices=4.0)
    (info,), _ = scan(tmp_path.iterdir())
    assert info.meta["slice_order"] == "instance_number"
    assert info.spacing[0] == 4.0
    np.testing.assert_array_equal(load_dicom(info), vol.astype(np.float32))


def test_parallel_stacks_side_by_side_are_separated(tmp_path):
    uid = F.new_uid()
    upper = ramp((3, 4, 4), seed=1).astype(np.uint16)
    lower = ramp((3, 4, 4), seed=2).astype(np.uint16)
    F.write_series(tmp_path, upper, series_uid=uid, origin=(0, 0, 0), prefix="U")
    F.write_series(tmp_path, lower, series_uid=uid, origin=(0, 300, 1), prefix="L")  # shifted in-plane
    vols, skips = scan(tmp_path.iterdir())
    assert not skips and len(vols) == 2
    got = sorted((load_dicom(v) for v in vols), key=lambda a: float(a[0, 0, 0] != upper[0, 0, 0]))
    np.testing.assert_array_equal(got[0], upper.astype(np.float32))
    np.testing.assert_array_equal(got[1], lower.astype(np.float32))


# --------------------------------------------------------------------------- grouping, skipping


def test_localizer_and_second_echo_do_not_join_the_stack(tmp_path):
    uid = F.new_uid()
    echo1 = ramp((4, 6, 6), seed=1).astype(np.uint16)
    echo2 = ramp((4, 6, 6), seed=2).astype(np.uint16)
    F.write_series(tmp_path, echo1, series_uid=uid, echo_number=1, echo_time=10.0, prefix="E1_")
    F.write_series(tmp_path, echo2, series_uid=uid, echo_number=2, echo_time=25.0, prefix="E2_")
    loc = F.write_mr(tmp_path / "loc.dcm", np.ones((6, 6), np.uint16), series_uid=uid, iop="sagittal",
                     image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    vols, skips = scan(tmp_path.iterdir())
    assert [s.path for s in skips] == [str(loc)] and "localizer" in skips[0].reason
    assert not skips[0].failed
    assert len(vols) == 2
    by_echo = {v.meta["echo_index"]: v for v in vols}
    assert by_echo[1].name.endswith("_e1") and by_echo[2].name.endswith("_e2")
    assert by_echo[1].meta["echo_time"] == 10.0 and by_echo[2].meta["n_echoes"] == 2
    np.testing.assert_array_equal(load_dicom(by_echo[1]), echo1.astype(np.float32))
    np.testing.assert_array_equal(load_dicom(by_echo[2]), echo2.astype(np.float32))


def test_localizer_by_description_and_other_matrix(tmp_path):
    F.write_series(tmp_path / "loc", np.ones((3, 4, 4), np.uint16), phi={"SeriesDescription": "AAHead_Scout"})
    uid = F.new_uid()
    F.write_series(tmp_path / "a", np.ones((3, 4, 4), np.uint16), series_uid=uid)
    F.write_series(tmp_path / "b", np.ones((3, 6, 4), np.uint16), series_uid=uid)  # other matrix
    vols, skips = scan(sorted(tmp_path.rglob("*.dcm")))
    assert len(skips) == 3 and all("localizer" in s.reason for s in skips)
    assert sorted(v.shape for v in vols) == [(3, 4, 4), (3, 6, 4)]


def test_phase_real_imaginary_skipped_unless_keep_components(tmp_path):
    uid = F.new_uid()
    mag = ramp((3, 4, 4), seed=1).astype(np.uint16)
    F.write_series(tmp_path, mag, series_uid=uid, prefix="M")
    phase = F.write_series(tmp_path, ramp((3, 4, 4), seed=2).astype(np.uint16), series_uid=uid, prefix="P",
                           image_type=("ORIGINAL", "PRIMARY", "P", "ND"))
    real = F.write_mr(tmp_path / "real.dcm", np.ones((4, 4), np.uint16), series_uid=F.new_uid(),
                      complex_component="REAL")
    vols, skips = scan(tmp_path.iterdir())
    assert len(vols) == 1
    np.testing.assert_array_equal(load_dicom(vols[0]), mag.astype(np.float32))
    reasons = {s.path: s.reason for s in skips}
    assert set(reasons) == {str(p) for p in phase} | {str(real)}
    assert all("phase" in reasons[str(p)] for p in phase) and "real" in reasons[str(real)]

    vols, skips = scan(tmp_path.iterdir(), keep_components=True)
    assert not skips and len(vols) == 3
    components = sorted(v.meta.get("complex_component", "magnitude") for v in vols)
    assert components == ["magnitude", "phase", "real"]
    assert any(v.name.endswith("_ph") for v in vols)


def test_ge_private_phase_flag(tmp_path):
    ds = F.mr_dataset(np.ones((4, 4), np.uint16), manufacturer="GE MEDICAL SYSTEMS")
    block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    block.add_new(0x2F, "SS", 1)
    F.save(ds, tmp_path / "ge.dcm")
    vols, skips = scan([tmp_path / "ge.dcm"])
    assert not vols and "phase" in skips[0].reason


@pytest.mark.parametrize(
    "kind, words",
    [
        ("dicomdir", "DICOMDIR"),
        ("sr", "structured report"),
        ("key_object", "key object"),
        ("presentation_state", "presentation state"),
        ("secondary_capture", "secondary capture"),
        ("raw_data", "raw data"),
        ("spectroscopy", "spectroscopy"),
        ("ct", "CT Image Storage"),
        ("no_pixels", "no pixel data"),
    ],
)
def test_non_images_skipped_with_reason(tmp_path, kind, words):
    path = F.write_non_image(tmp_path / f"{kind}.dcm", kind)
    vols, skips = scan([path])
    assert not vols
    # an MR image without its pixels is an image lost (a fault); the others are not images for us
    assert skips == [Skipped(str(path), skips[0].reason, failed=kind == "no_pixels")]
    assert words in skips[0].reason


def test_file_named_dicomdir_skipped(tmp_path):
    path = F.write_non_image(tmp_path / "DICOMDIR", "dicomdir")
    _, skips = scan([path])
    assert "DICOMDIR" in skips[0].reason and not skips[0].failed


def test_bad_files_fail_without_stopping_the_scan(tmp_path):
    vol = ramp((3, 4, 4)).astype(np.uint16)
    F.write_series(tmp_path / "good", vol)
    text = tmp_path / "notes.dcm"
    text.write_text("not a dicom file\n" * 20)
    src = F.write_mr(tmp_path / "src.dcm", ramp((8, 8)).astype(np.uint16), series_uid=F.new_uid())
    cut_pixels = F.truncate(src, src.stat().st_size - 20, tmp_path / "cut_pixels.dcm")
    cut_header = F.truncate(src, 600, tmp_path / "cut_header.dcm")
    rle = F.write_mr(tmp_path / "rle.dcm", ramp((8, 8)).astype(np.uint16), transfer_syntax="rle")
    cut_rle = F.truncate(rle, 0.8, tmp_path / "cut_rle.dcm")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    src.unlink()
    rle.unlink()
    bad = [text, cut_pixels, cut_header, cut_rle, empty, tmp_path / "vanished.dcm"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning spam either
        vols, skips = scan(sorted((tmp_path / "good").iterdir()) + bad)
    assert len(vols) == 1 and vols[0].shape == (3, 4, 4)
    assert {s.path for s in skips} == {str(p) for p in bad}
    assert all(s.failed and s.reason for s in skips)
    by_path = {s.path: s.reason for s in skips}
    assert "not a DICOM" in by_path[str(text)]
    assert "truncated" in by_path[str(cut_pixels)] and "truncated" in by_path[str(cut_header)]


def test_odd_values_are_quiet(tmp_path):
    path = F.write_mr(tmp_path / "odd.dcm", np.ones((4, 4), np.uint16), slice_thickness=7.25)
    data = path.read_bytes()
    assert data.count(b"7.25") == 1
    path.write_bytes(data.replace(b"7.25", b"x.yz"))  # an invalid DS value, as some scanners write
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (info,), _ = scan([tmp_path / "odd.dcm"])
        load_dicom(info)
    assert info.spacing[0] == 1.0


# ---------------------------------------------------------------------------------- duplicates


def test_repeated_acquisitions_split_by_acquisition_number(tmp_path):
    uid = F.new_uid()
    first, second = ramp((3, 4, 4), seed=1).astype(np.uint16), ramp((3, 4, 4), seed=2).astype(np.uint16)
    F.write_series(tmp_path, first, series_uid=uid, acquisition_number=1, prefix="A")
    F.write_series(tmp_path, second, series_uid=uid, acquisition_number=2, prefix="B")
    vols, skips = scan(tmp_path.iterdir())
    assert not skips and len(vols) == 2
    by_acq = {v.meta["acquisition_number"]: v for v in vols}
    np.testing.assert_array_equal(load_dicom(by_acq[1]), first.astype(np.float32))
    np.testing.assert_array_equal(load_dicom(by_acq[2]), second.astype(np.float32))
    assert len({v.name for v in vols}) == 2 and len({v.key for v in vols}) == 2


def test_repeats_split_by_instance_order(tmp_path):
    uid = F.new_uid()
    first, second = ramp((3, 4, 4), seed=1).astype(np.uint16), ramp((3, 4, 4), seed=2).astype(np.uint16)
    for i in range(3):
        F.write_mr(tmp_path / f"x{i}.dcm", first[i], series_uid=uid, ipp=(0, 0, 2.0 * i), instance_number=3 - i)
        F.write_mr(tmp_path / f"y{i}.dcm", second[i], series_uid=uid, ipp=(0, 0, 2.0 * i), instance_number=10 + i)
    vols, skips = scan(tmp_path.iterdir())
    assert not skips and len(vols) == 2
    by_repeat = {v.meta["repeat"]: v for v in vols}
    np.testing.assert_array_equal(load_dicom(by_repeat[1]), first.astype(np.float32))
    np.testing.assert_array_equal(load_dicom(by_repeat[2]), second.astype(np.float32))


def test_unresolvable_duplicates_are_reported_not_mixed(tmp_path):
    uid = F.new_uid()
    F.write_series(tmp_path, np.ones((3, 4, 4), np.uint16), series_uid=uid)
    F.write_mr(tmp_path / "extra.dcm", np.ones((4, 4), np.uint16), series_uid=uid, ipp=(-10.0, -20.0, 32.0))
    vols, skips = scan(tmp_path.iterdir())
    assert not vols
    assert len(skips) == 1 and "duplicated slice positions" in skips[0].reason


def test_identical_copy_of_a_file_is_skipped(tmp_path):
    paths = F.write_series(tmp_path / "a", ramp((3, 4, 4)).astype(np.uint16))
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(paths[1].read_bytes())
    vols, skips = scan(sorted((tmp_path / "a").iterdir()) + [copy])
    assert len(vols) == 1 and vols[0].shape[0] == 3
    assert skips[0].path == str(copy) and "duplicate" in skips[0].reason


# ------------------------------------------------------------------------------------ pixels


def test_rescale_and_signed_pixels(tmp_path):
    raw = (ramp((6, 6)) - 1000).astype(np.int16)
    F.write_mr(tmp_path / "r.dcm", raw, rescale_slope=0.5, rescale_intercept=-100.0)
    (info,), _ = scan([tmp_path / "r.dcm"])
    np.testing.assert_allclose(load_dicom(info)[0], raw * 0.5 - 100.0)


def test_monochrome1_inverted(tmp_path):
    raw = ramp((6, 6)).astype(np.uint16)
    F.write_mr(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1")
    (info,), _ = scan([tmp_path / "m1.dcm"])
    expected = raw.max() + raw.min() - raw.astype(np.float32)
    np.testing.assert_array_equal(load_dicom(info)[0], expected)


@pytest.mark.parametrize("syntax", ["rle", "jpegls", "jpeg2000", "jpeg_lossless"])
def test_compressed_round_trip_equals_uncompressed(tmp_path, syntax):
    vol = ramp((2, 32, 32), high=4000).astype(np.uint16)
    F.write_series(tmp_path / "plain", vol, seed=1)
    F.write_series(tmp_path / syntax, vol, seed=1, transfer_syntax=syntax)
    (plain,), _ = scan((tmp_path / "plain").iterdir())
    (packed,), _ = scan((tmp_path / syntax).iterdir())
    assert packed.meta["transfer_syntax"] != plain.meta["transfer_syntax"]
    np.testing.assert_array_equal(load_dicom(packed), load_dicom(plain))
    np.testing.assert_array_equal(load_dicom(plain), vol.astype(np.float32))


def test_missing_codec_names_the_extra(tmp_path, monkeypatch):
    path = F.write_mr(tmp_path / "jls.dcm", ramp((8, 8)).astype(np.uint16), transfer_syntax="jpegls")
    (info,), _ = scan([path])
    from pydicom.pixels import get_decoder

    monkeypatch.setattr(get_decoder(JPEGLSLossless), "_available", {})
    with pytest.raises(SourceError) as err:
        load_dicom(info)
    message = str(err.value)
    assert "kspacify[codecs]" in message and CODECS_FIX in message
    assert str(path) in message and "JPEG-LS" in message


def test_corrupt_pixel_data_raises_source_error(tmp_path):
    path = F.write_mr(tmp_path / "rle.dcm", ramp((8, 8)).astype(np.uint16), transfer_syntax="rle")
    (info,), _ = scan([path])
    data = bytearray(path.read_bytes())
    item = b"\xfe\xff\x00\xe0"
    fragment = data.index(item, data.index(item) + 4) + 8  # after the basic offset table
    data[fragment:fragment + 8] = (9).to_bytes(4, "little") + (10**6).to_bytes(4, "little")  # bad RLE header
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=re.escape(str(path))):
        load_dicom(info)
    path.write_bytes(b"gone")
    with pytest.raises(SourceError, match=re.escape(str(path))):
        load_dicom(info)


# ------------------------------------------------------------------------------- enhanced MR


def test_enhanced_mr_frames_ordered_rescaled_and_phase_dropped(tmp_path):
    rng = np.random.default_rng(5)
    mag = ramp((4, 6, 6), seed=1).astype(np.uint16)
    order = [2, 0, 3, 1]  # file frame f holds slice order[f]
    frames, positions, rescale, components = [], [], [], []
    for f, z in enumerate(order):
        frames += [mag[z], rng.integers(0, 4000, (6, 6)).astype(np.uint16)]
        positions += [(0.0, 0.0, 1.5 * z)] * 2
        rescale += [(1.0 + f, 10.0 * f), (1.0, 0.0)]
        components += ["MAGNITUDE", "PHASE"]
    path = F.write_enhanced_mr(tmp_path / "enh.dcm", np.stack(frames), positions=positions, rescale=rescale,
                               complex_components=components)
    (info,), skips = scan([path])
    assert not skips
    assert info.meta["sop_class"] == "Enhanced MR Image Storage"
    assert info.shape == (4, 6, 6) and info.spacing == pytest.approx((1.5, 1.0, 1.0))
    assert [ref.frame for ref in info.slices] == [2, 6, 0, 4]
    expected = np.stack([mag[z] * (1.0 + f) + 10.0 * f for f, z in sorted(enumerate(order), key=lambda t: t[1])])
    np.testing.assert_allclose(load_dicom(info), expected)

    vols, _ = scan([path], keep_components=True)
    assert len(vols) == 2 and {v.meta.get("complex_component") for v in vols} == {None, "phase"}


def test_enhanced_mr_multi_echo_and_shared_rescale(tmp_path):
    e1, e2 = ramp((3, 4, 4), seed=1).astype(np.uint16), ramp((3, 4, 4), seed=2).astype(np.uint16)
    frames = np.concatenate([e1, e2])
    positions = [(0.0, 2.0 * z, 0.0) for z in range(3)] * 2  # along the coronal normal (+y)
    path = F.write_enhanced_mr(tmp_path / "me.dcm", frames, positions=positions, rescale=(2.0, -5.0),
                               echo_times=[5.0] * 3 + [12.0] * 3, iop="coronal")
    vols, _ = scan([path])
    assert len(vols) == 2
    by_echo = {v.meta["echo_index"]: v for v in vols}
    assert by_echo[2].meta["echo_time"] == 12.0 and by_echo[2].name.endswith("_e2")
    assert by_echo[1].meta["plane"] == "coronal"
    np.testing.assert_allclose(load_dicom(by_echo[1]), e1 * 2.0 - 5.0)
    np.testing.assert_allclose(load_dicom(by_echo[2]), e2 * 2.0 - 5.0)


def test_enhanced_mr_truncated(tmp_path):
    path = F.write_enhanced_mr(tmp_path / "e.dcm", np.ones((3, 4, 4), np.uint16),
                               positions=[(0, 0, z) for z in range(3)])
    F.truncate(path, 0.9)
    vols, skips = scan([path])
    assert not vols and skips[0].failed and "truncated" in skips[0].reason


# -------------------------------------------------------------------- pydicom's own test files

MR_SMALL = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
            "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm", "MR_small_padded.dcm"]


@pytest.fixture(scope="module")
def mr_small_reference():
    path = PYDICOM_FILES / "MR_small.dcm"
    if not path.exists():
        pytest.skip("pydicom test files not installed")
    return pydicom.dcmread(path).pixel_array.astype(np.float32)


@pytest.mark.parametrize("name", MR_SMALL)
def test_pydicom_mr_small_variants(name, mr_small_reference):
    path = PYDICOM_FILES / name
    if not path.exists():
        pytest.skip(f"{name} not shipped with this pydicom")
    (info,), skips = scan([path])
    assert not skips
    assert info.shape == (1, 64, 64)
    assert info.spacing == pytest.approx((0.8, 0.3125, 0.3125))
    assert info.meta["manufacturer"] == "TOSHIBA_MEC" and info.meta["echo_time"] == 240.0
    assert "CompressedSamples" not in json.dumps(info.to_json())
    np.testing.assert_array_equal(load_dicom(info)[0], mr_small_reference)


def test_pydicom_truncated_and_sr():
    if not (PYDICOM_FILES / "MR_truncated.dcm").exists():
        pytest.skip("pydicom test files not installed")
    vols, skips = scan([PYDICOM_FILES / "MR_truncated.dcm", PYDICOM_FILES / "test-SR.dcm"])
    assert not vols
    reasons = {Path(s.path).name: s for s in skips}
    assert reasons["MR_truncated.dcm"].failed and "truncated" in reasons["MR_truncated.dcm"].reason
    assert not reasons["test-SR.dcm"].failed and "structured report" in reasons["test-SR.dcm"].reason


def test_nibabel_shipped_dicom_files(tmp_path):
    """Real scanner files that nibabel ships: a Philips Enhanced MR multi-frame file converts; the
    Siemens mosaic 0.dcm declares more tiles than its image holds, so it is reported (mosaics that
    fit: tests/test_dicom_mosaic.py)."""
    import gzip

    import nibabel

    data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    if not (data / "philips_mprage.dcm.gz").exists():
        pytest.skip("nibabel's DICOM test files are not installed")
    enhanced = tmp_path / "philips_mprage.dcm"
    enhanced.write_bytes(gzip.decompress((data / "philips_mprage.dcm.gz").read_bytes()))
    vols, skips = scan([enhanced, data / "0.dcm"])
    (info,) = vols
    volume = load_dicom(info)
    assert volume.shape == info.shape and volume.shape[0] > 1 and np.isfinite(volume).all()
    assert info.meta["manufacturer"].lower().startswith("philips")
    (mosaic,) = skips
    assert "mosaic" in mosaic.reason.lower() and mosaic.failed
