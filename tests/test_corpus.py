"""The fault corpus, in this process: one kind per test, each beside a valid 8-slice series (see
`corpus.py` for what every kind asserts, docs/reliability.md for the list and what kspacify does).
A kind whose fix is still to come is registered as a strict xfail naming what must change (none is, today)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Callable

import dicom_factory as F
import numpy as np
import pydicom
import pytest
from corpus import (
    ARGS,
    DIM,
    NIFTI_VOLUME,
    SALT,
    SCL_SLOPE,
    SFORM_CODE,
    SROW_X,
    VOLUME,
    Expect,
    Reference,
    cli,
    convert_args,
    edit,
    image,
    make_reference,
    manifest_of,
    nifti,
    patch,
    series,
    setup,
    verify,
    write_lines,
)  # fmt: skip
from pydicom.uid import RLELossless

from kspacify import atomic
from kspacify import convert as pipeline
from kspacify.sources import Pseudonymizer

KINDS: dict[str, tuple[Callable[[Path], Expect], str | None]] = {}


def kind(name: str, xfail: str | None = None) -> Callable:
    """Register a kind: `build(inputs)` makes the bad input(s) in `inputs` (beside the valid series)
    and returns what to expect; `xfail`: what the DICOM reader must change for it to pass."""

    def register(build: Callable[[Path], Expect]) -> Callable[[Path], Expect]:
        KINDS[name] = (build, xfail)
        return build

    return register


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    return make_reference(tmp_path_factory.mktemp("reference"))


def _params():
    for name, (_build, xfail) in KINDS.items():
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        yield pytest.param(name, marks=marks, id=name)


# ------------------------------------------------------------------------------- DICOM files


@kind("dicom_truncated_header")
def _(d):
    path = F.truncate(image(d / "cut.dcm"), 300)
    return Expect(1, named=[(path, "truncated|damaged")])


@kind("dicom_truncated_pixels")
def _(d):
    path = F.truncate(image(d / "cut.dcm"), 0.8)
    return Expect(1, named=[(path, "truncated")])


@kind("dicom_empty_file")
def _(d):
    (d / "empty.dcm").write_bytes(b"")
    return Expect(1, named=[(d / "empty.dcm", "")])


@kind("dicom_text_named_dcm")
def _(d):
    (d / "notes.dcm").write_text("not an image\n")
    return Expect(1, named=[(d / "notes.dcm", "not a DICOM")])


@kind("junk_file_in_a_walk")
def _(d):
    (d / "README").write_bytes(os.urandom(300))
    return Expect(0, counted=["not a DICOM or NIfTI file"])


@kind("dicom_non_images")
def _(d):
    for what in ("dicomdir", "sr", "presentation_state", "secondary_capture", "raw_data", "spectroscopy", "ct"):
        F.write_non_image(d / ("DICOMDIR" if what == "dicomdir" else f"{what}.dcm"), what)
    return Expect(0, counted=["DICOMDIR", "structured report", "presentation state", "secondary capture", "raw data",
                              "spectroscopy", "not an MR image"])  # fmt: skip


@kind("dicom_claims_65535x65535_pixels")
def _(d):
    path = edit(image(d / "big.dcm"), Rows=65535, Columns=65535)
    return Expect(1, named=[(path, r"header claims 65535 x 65535 pixels .* but the file holds")])


@kind("dicom_enhanced_claims_5000_frames")
def _(d):
    path = F.write_enhanced_mr(d / "enhanced.dcm", VOLUME[:2], positions=[(0, 0, 0), (0, 0, 2)])
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 5000
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(path)
    return Expect(1, named=[(path, r"header claims 5000 images")])


@kind("dicom_rows_zero")
def _(d):
    path = edit(image(d / "zero.dcm"), Rows=0)
    return Expect(1, named=[(path, "no image matrix")])


@kind("dicom_pixel_spacing_zero")
def _(d):
    series(d / "s", spacing=(2.0, 0.0, 0.0))
    return Expect(0, notes=[r"/s: pixel spacing 0 x 0 mm is unusable: 1 mm assumed"], extra=1)


@kind("dicom_pixel_spacing_negative")
def _(d):
    series(d / "s", spacing=(2.0, -1.0, -1.0))
    return Expect(0, notes=["pixel spacing -1 x -1 mm is unusable"], extra=1)


@kind("dicom_orientation_degenerate")
def _(d):
    series(d / "s", orientation=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    return Expect(0, notes=["no usable slice positions or orientation: slices ordered by instance number"], extra=1)


@kind("dicom_3_of_8_slices_missing")
def _(d):
    for path in series(d / "s")[2:5]:
        path.unlink()
    return Expect(1, named=[(d / "s", r"5 slices with gaps from 2.0 to 8.0 mm")])


@kind("dicom_palette_color")
def _(d):
    series(d / "s", photometric="PALETTE COLOR")
    return Expect(1, named=[(d / "s", "PALETTE COLOR .* not magnitudes")])


@kind("dicom_rescale_slope_1e39")
def _(d):
    series(d / "s", rescale_slope=1e39, rescale_intercept=0)
    return Expect(1, named=[(d / "s", "no pixel value is a finite number")])


@kind("dicom_rescale_slope_0")
def _(d):
    series(d / "s", rescale_slope=0, rescale_intercept=0)
    return Expect(1, named=[(d / "s", "every pixel value is 0")])


@kind("dicom_rescale_slope_minus_1")
def _(d):
    series(d / "s", rescale_slope=-1, rescale_intercept=0)
    return Expect(1, named=[(d / "s", "no pixel value is positive")])


@kind("dicom_signed_pixels_partly_negative")
def _(d):
    series(d / "s", VOLUME.astype(np.int16) - 60)
    return Expect(0, notes=[r"/s: \d+ of 2048 pixel values were negative \(down to -40\): set to 0"], extra=1)


def _break_rle(path: Path) -> Path:
    """Damage an RLE file where the header pass cannot see it: its RLE header (in the first
    fragment) puts the second segment beyond the fragment's end."""
    data = path.read_bytes()
    at = data.rindex(b"\x02\x00\x00\x00\x40\x00\x00\x00")  # 2 segments, the first at byte 64
    path.write_bytes(data[: at + 8] + b"\xff\xff\x00\x00" + data[at + 12 :])
    return path


@kind("dicom_corrupt_rle_stream")
def _(d):
    path = _break_rle(image(d / "rle.dcm", transfer_syntax=RLELossless))
    return Expect(1, named=[(path, "cannot decode")])


@kind("dicom_identical_copy_of_the_series")
def _(d):
    copy = d / "copy"
    copy.mkdir()
    for path in (d / "valid").iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    return Expect(0, counted=["duplicate copy"])


@kind("dicom_phi_in_folder_and_file_names")
def _(d):
    folder = d / "DOE_JANE_MRN123456_19700101"
    series(folder, prefix="DOE_JANE_")
    return Expect(0, extra=1, phi=["DOE_JANE", "MRN123456", "19700101"])


@kind("dicom_duplicated_positions_unresolvable")
def _(d):
    paths = series(d / "s")
    for path in paths[:3]:
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = F.new_uid()
        ds.save_as(path.with_name(path.stem + "_again.dcm"))
    return Expect(1, named=[(d / "s", "duplicated slice positions")])


@kind("dicom_no_pixel_data")
def _(d):
    F.write_non_image(d / "header_only.dcm", "no_pixels")
    return Expect(1, named=[(d / "header_only.dcm", "no pixel data")])


@kind("dicom_garbage_sop_class")
def _(d):
    path = image(d / "garbage.dcm")
    edit(path, SOPClassUID="1.2.3.GARBAGE")
    return Expect(1, named=[(path, "SOP class")])


@kind("dicom_float_pixel_data")
def _(d):
    ds = F.mr_dataset(VOLUME[0], series_number=3)
    del ds.PixelData
    ds.FloatPixelData = VOLUME[0].astype("<f4").tobytes()
    ds.save_as(d / "float.dcm", enforce_file_format=True)
    return Expect(1, named=[(d / "float.dcm", "float pixel data")])


@kind("dicom_multiframe_classic_mr")
def _(d):
    F.save(F.mr_dataset(VOLUME[:3], series_number=3), d / "frames.dcm")
    return Expect(1, named=[(d / "frames.dcm", "multi-frame")])


def _damaged_copies(d: Path, count: int) -> list[Path]:
    """Copies of the first `count` valid slices in a folder walked first, their pixels damaged."""
    damaged = d / "0_copies"
    damaged.mkdir()
    copies = []
    for path in sorted((d / "valid").iterdir())[:count]:
        data = bytearray(path.read_bytes())
        copies.append(damaged / path.name)
        copies[-1].write_bytes(bytes(data[: len(data) - 100]))  # cut inside the pixel data
    return copies


@kind("dicom_conflicting_copy_of_one_slice_elsewhere")
def _(d):
    copies = d / "0_copies"  # walked before the valid series
    copies.mkdir()
    path = sorted((d / "valid").iterdir())[0]
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 8, 8  # a complete, readable file: another image under the same UID
    ds.PixelData = ds.PixelData[: 8 * 8 * 2]
    ds.save_as(copies / path.name)
    return Expect(1, named=[(copies / path.name, "conflict|same SOP")])


@kind("dicom_undecodable_copy_of_the_whole_series")
def _(d):
    copies = d / "0_copies"
    copies.mkdir()
    for path in sorted((d / "valid").iterdir()):
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless, generate_instance_uid=False)
        ds.save_as(copies / path.name)
        _break_rle(copies / path.name)
    return Expect(1, named=[(copies, "cannot decode|damaged")])


# -------------------------------------------------------------------------------- file names


def _corrupt_named(d: Path, name: str | bytes) -> Path:
    path = os.path.join(os.fsencode(d), name) if isinstance(name, bytes) else os.path.join(d, name)
    with open(path, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00cut")
    return Path(os.fsdecode(path))


@kind("name_with_a_newline")
def _(d):
    path = _corrupt_named(d, "a\nkspacify: forged.dcm")
    return Expect(1, named=[(path, "")])


@kind("name_with_terminal_escapes")
def _(d):
    path = _corrupt_named(d, "\x1b[2J\x1b[31mred.dcm")
    return Expect(1, named=[(path, "")])


@kind("name_not_utf8")
def _(d):
    path = _corrupt_named(d, b"\xff\xfe-latin1-\xe9.dcm")
    return Expect(1, named=[(path, "")])


@kind("name_with_rich_markup_and_emoji_codes")
def _(d):
    path = _corrupt_named(d, "[bold]x[red] :smile:.dcm")
    return Expect(1, named=[(path, "")])


# ------------------------------------------------------------------------------- file system


@kind("broken_symbolic_link")
def _(d):
    (d / "gone.dcm").symlink_to(d / "nowhere.dcm")
    return Expect(1, named=[(d / "gone.dcm", "broken symbolic link")])


@kind("symbolic_link_loop")
def _(d):
    (d / "a.dcm").symlink_to(d / "b.dcm")
    (d / "b.dcm").symlink_to(d / "a.dcm")
    return Expect(1, named=[(d / "a.dcm", "unreadable: Too many levels"), (d / "b.dcm", "unreadable")])


@kind("link_to_a_folder")
def _(d):
    (d / "elsewhere").symlink_to(d / "valid", target_is_directory=True)
    return Expect(0, counted=["link to a directory"])


@kind("socket_in_the_tree")
def _(d):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "daemon.sock"))  # closed, the file stays
    sock.close()
    return Expect(0, counted=[r"not a regular file \(a socket\)"])


@kind("device_given_explicitly")
def _(d):
    return Expect(1, named=[("/dev/null", r"not a regular file \(a character device\)")], inputs=[d, "/dev/null"])


@kind("missing_input")
def _(d):
    return Expect(1, named=[(d / "nope", "no such file or directory")], inputs=[d, d / "nope"])


@kind("glob_matching_nothing")
def _(d):
    return Expect(1, named=[(f"{d}/*.nothing", "no file matches")], inputs=[d, f"{d}/*.nothing"])


@kind("same_folder_given_twice")
def _(d):
    return Expect(0, counted=["the same file as another input"], inputs=[d, d / "valid"])


@kind("input_from_stdin_with_a_newline_in_a_name")
def _(d):
    odd = _corrupt_named(d, "odd\nname.dcm")
    return Expect(1, named=[(odd, "")], inputs=["-", "-0"])


# ------------------------------------------------------------------------------------- NIfTI


@kind("nifti_nan_affine")
def _(d):
    path = patch(nifti(d / "v.nii"), SROW_X, "<4f", float("nan"), 0.0, 0.0, 0.0)
    patch(path, SFORM_CODE, "<h", 1)
    return Expect(0, notes=["affine not finite or singular: voxel axes used"], extra=1)


@kind("nifti_singular_affine")
def _(d):
    path = patch(nifti(d / "v.nii"), SROW_X + 32, "<4f", 0.0, 0.0, 0.0, 0.0)  # srow_z: no slice axis
    patch(path, SFORM_CODE, "<h", 1)
    return Expect(0, notes=["affine not finite or singular"], extra=1)


@kind("nifti_zero_length_dimension")
def _(d):
    path = patch(nifti(d / "v.nii"), DIM, "<4h", 3, 16, 16, 0)
    return Expect(1, named=[(path, "zero-length dimension")])


@kind("nifti_claims_30000x30000x8")
def _(d):
    path = patch(nifti(d / "v.nii"), DIM, "<4h", 3, 30000, 30000, 8)
    return Expect(1, named=[(path, "header claims 8 images of 30000 x 30000 pixels")])


@kind("nifti_gz_claims_30000x30000x8")
def _(d):
    path = patch(nifti(d / "v.nii.gz"), DIM, "<4h", 3, 30000, 30000, 8)
    return Expect(1, named=[(path, r"header claims .* \(even at 1100:1 compression\)")])


@kind("nifti_truncated")
def _(d):
    path = nifti(d / "v.nii")
    path.write_bytes(path.read_bytes()[:2000])
    return Expect(1, named=[(path, "header claims|cannot read")])


@kind("nifti_gz_truncated")
def _(d):
    path = nifti(d / "v.nii.gz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Expect(1, named=[(path, "cannot read NIfTI data")])


@kind("nifti_not_gzip")
def _(d):
    (d / "v.nii.gz").write_bytes(b"\x1f\x8b garbage")
    return Expect(1, named=[(d / "v.nii.gz", "not a readable NIfTI")])


@kind("nifti_float64_near_1e300")
def _(d):
    path = nifti(d / "v.nii", NIFTI_VOLUME.astype(np.float64) * 1e300)
    return Expect(1, named=[(path, "do not fit in float32")])


@kind("nifti_some_nan_voxels")
def _(d):
    data = NIFTI_VOLUME.copy()
    data[0, 0, :] = np.nan
    data[1, 1, 1] = np.inf
    nifti(d / "v.nii", data)
    return Expect(0, notes=["9 of 2048 pixel values were NaN or infinite: set to 0"], extra=1)


@kind("nifti_all_nan")
def _(d):
    path = nifti(d / "v.nii", np.full((16, 16, 8), np.nan, np.float32))
    return Expect(1, named=[(path, "no pixel value is a finite number")])


@kind("nifti_negative_values")
def _(d):
    nifti(d / "v.nii", NIFTI_VOLUME - 100)
    return Expect(0, notes=["pixel values were negative"], extra=1)


@kind("nifti_all_zero")
def _(d):
    path = nifti(d / "v.nii", np.zeros((16, 16, 8), np.float32))
    return Expect(1, named=[(path, "every pixel value is 0")])


@kind("nifti_infinite_scale_slope")
def _(d):
    patch(nifti(d / "v.nii", (NIFTI_VOLUME * 10).astype(np.int16)), SCL_SLOPE, "<f", float("inf"))
    return Expect(0, extra=1)


@kind("nifti_5d")
def _(d):
    path = nifti(d / "v.nii", np.ones((4, 4, 4, 2, 2), np.float32))
    return Expect(1, named=[(path, "unsupported NIfTI shape")])


@kind("nifti_rgb")
def _(d):
    rgb = np.zeros((8, 8, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = nifti(d / "v.nii", rgb)
    return Expect(1, named=[(path, "RGB or structured")])


@kind("nifti_sidecar_not_json")
def _(d):
    nifti(d / "v.nii")
    (d / "v.json").write_text("{not json")
    return Expect(0, notes=["JSON sidecar unreadable"], extra=1)


@kind("nifti_phi_in_the_file_name")
def _(d):
    nifti(d / "DOE_JANE_MRN123456_19700101.nii.gz")
    return Expect(0, extra=1, phi=["DOE_JANE", "MRN123456", "19700101"])


@kind("nifti_phi_in_bids_names")
def _(d):
    nifti(d / "sub-DOEJANE" / "ses-19700101" / "anat" / "sub-DOEJANE_ses-19700101_T1w.nii.gz")
    return Expect(0, extra=1, phi=["DOEJANE", "19700101"])


# ------------------------------------------------------------------------------------ options


def _usage(*args: str, message: str) -> Callable[[Path], Expect]:
    return lambda d: Expect(2, named=[("", message)], valid=False, args=args)


for _name, _args, _message in (
    ("option_seed_negative", ("--seed", "-1"), "greater than or equal to 0|not in the range"),
    ("option_phase_opt_typo", ("--phase", "smooth", "--phase-opt", "smoothnes=0.2"), "smoothnes"),
    ("option_phase_opt_amplitude_inf", ("--phase", "smooth", "--phase-opt", "amplitude=inf"), "finite"),
    ("option_phase_opt_amplitude_nan", ("--phase", "smooth", "--phase-opt", "amplitude=nan"), "finite"),
    ("option_phase_opt_smoothness_1e308", ("--phase", "smooth", "--phase-opt", "smoothness=1e308"), r"\(0, 10\]"),
    ("option_size_30000", ("--size", "30000"), "size must be 8 to 4096"),
    ("option_percentile_nan", ("--percentile", "nan"), "percentile"),
    ("option_max_memory_garbage", ("--max-memory", "lots"), "--max-memory 'lots'"),
    ("option_unknown_phase_method", ("--phase", "nope"), "nope"),
    ("option_shard_without_manifest", ("--shard", "0/2"), "--shard needs --manifest"),
):
    kind(_name)(_usage(*_args, message=_message))


@kind("output_path_is_a_file")
def _(d):
    (d.parent / "out").write_text("not a folder")
    return Expect(2, named=[(d.parent / "out", "is not a directory")], valid=False)


@kind("volume_over_the_memory_limit")
def _(d):
    big = nifti(d / "big.nii", np.ones((48, 48, 24), np.float32))
    small = pipeline.memory_needed(_info_of(d / "valid"), pipeline.ConvertConfig(pipeline.Preprocessing(size=32)))
    large = pipeline.memory_needed(_info_of(big), pipeline.ConvertConfig(pipeline.Preprocessing(size=32)))
    assert small < large
    return Expect(1, named=[(big, r"needs about .* more than the .* --max-memory")], args=["--max-memory", str((small + large) // 2)])


def _info_of(path: Path):
    from kspacify import sources

    (info,) = [i for i in sources.scan(sources.discover([str(path)]), Pseudonymizer(b"x")) if not isinstance(i, sources.Skipped)]
    return info


# -------------------------------------------------------------------- the in-process kinds run


@pytest.mark.parametrize("name", list(_params()))
def test_kind(name, tmp_path, reference):
    build, _ = KINDS[name]
    inputs = setup(tmp_path, reference)
    expect = build(inputs)
    stdin = None
    if expect.inputs == ["-", "-0"]:
        stdin = "\0".join(str(p) for p in sorted(inputs.rglob("*")) if p.is_file()) + "\0"
    run = cli(*convert_args(tmp_path, expect), input=stdin)
    verify(run, tmp_path, expect, reference)


# ----------------------------------------------------------------------------------- manifests


def _manifest_kind(tmp_path: Path, reference: Reference, change: Callable[[list[dict], Path], list[dict] | bytes]):
    inputs = setup(tmp_path, reference)
    records = manifest_of(tmp_path, inputs)
    changed = change(records, inputs)
    path = tmp_path / "manifest.jsonl"
    if isinstance(changed, bytes):
        path.write_bytes(changed)
    else:
        write_lines(path, changed)
    return path, cli("convert", "--manifest", path, tmp_path / "out", *ARGS)


def _with_volume(record: dict, **fields) -> dict:
    return {**record, "volume": {**record["volume"], **fields}}


MANIFEST_USAGE = {
    "manifest_name_escapes_the_output_folder": (lambda r, d: [_with_volume(r[0], name="../../ESCAPED")], "is not a plain file name"),
    "manifest_name_is_an_absolute_path": (lambda r, d: [_with_volume(r[0], name="/tmp/ESCAPED")], "is not a plain file name"),
    "manifest_not_utf8": (lambda r, d: b"\xff\xfe{\x00" + json.dumps(r[0]).encode("utf-16-le"), "not UTF-8"),
    "manifest_deeply_nested_json": (lambda r, d: ("[" * 100000 + "]" * 100000 + "\n").encode(), "RecursionError|unreadable"),
    "manifest_nan_spacing": (lambda r, d: json.dumps(_with_volume(r[0], spacing=[float("nan"), 1, 1])).encode() + b"\n", "NaN"),
    "manifest_native_dtype_edited": (
        lambda r, d: [_with_volume(r[0], slices=[{**s, "native": {**s["native"], "dtype": "O"}} for s in r[0]["volume"]["slices"]])],
        "native dtype 'O'"),
    "manifest_truncated_line": (lambda r, d: json.dumps(r[0]).encode()[:-40], "unreadable manifest line"),
    "manifest_is_a_folder": (lambda r, d: None, "cannot read the manifest"),
}


@pytest.mark.parametrize("name", list(MANIFEST_USAGE))
def test_manifest_usage_kinds(name, tmp_path, reference):
    change, message = MANIFEST_USAGE[name]
    if name == "manifest_is_a_folder":
        setup(tmp_path, reference)
        (tmp_path / "manifest.jsonl").mkdir()
        path, run = tmp_path / "manifest.jsonl", cli("convert", "--manifest", tmp_path / "manifest.jsonl", tmp_path / "out", *ARGS)
    else:
        path, run = _manifest_kind(tmp_path, reference, change)
    verify(run, tmp_path, Expect(2, named=[(path, message)], valid=False), None)
    assert not (tmp_path / "ESCAPED.h5").exists() and not Path("/tmp/ESCAPED.h5").exists()


def test_manifest_with_an_edited_shape_fails_that_volume_only(tmp_path, reference):
    def change(records, inputs):
        edited = _with_volume(records[0], name="edited", shape=[8, 65535, 65535])
        return [records[0], edited]

    _, run = _manifest_kind(tmp_path, reference, change)
    first = sorted((tmp_path / "in" / "valid").iterdir())[0]
    verify(run, tmp_path, Expect(1, named=[(first.parent, r"header claims .*65535 x 65535")]), reference)


def test_manifest_of_deleted_files_fails_those_volumes(tmp_path, reference):
    def change(records, inputs):
        nifti(inputs / "gone.nii")
        more = manifest_of(tmp_path, inputs / "gone.nii")
        (inputs / "gone.nii").unlink()
        return records + more

    _, run = _manifest_kind(tmp_path, reference, change)
    verify(run, tmp_path, Expect(1, named=[(tmp_path / "in" / "gone.nii", "unreadable: No such file")]), reference)


def test_empty_manifest_finds_nothing(tmp_path):
    (tmp_path / "manifest.jsonl").write_text("\n")
    run = cli("convert", "--manifest", tmp_path / "manifest.jsonl", tmp_path / "out", *ARGS)
    verify(run, tmp_path, Expect(3, named=[("", "the manifest lists no volume")]), None)


def test_manifest_names_are_pseudonymous(tmp_path, reference):
    inputs = setup(tmp_path, reference)
    nifti(inputs / "DOE_JANE_MRN123456_19700101.nii.gz")
    text = json.dumps(manifest_of(tmp_path, inputs))
    names = [r["volume"]["name"] for r in json.loads(text)]
    assert all("DOE" not in n and "MRN123456" not in n for n in names), names


# ------------------------------------------------------------------------ exit codes without neighbours


def test_only_junk_is_nothing_found(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    (tmp_path / "in" / "b.dcm").write_bytes(b"junk")
    run = cli("convert", tmp_path / "in", tmp_path / "out", *ARGS)
    verify(run, tmp_path, Expect(3, named=[(tmp_path / "in" / "b.dcm", "not a DICOM"), ("", "nothing convertible found")]), None)


def test_empty_folder_is_nothing_found(tmp_path):
    (tmp_path / "in").mkdir()
    run = cli("scan", tmp_path / "in", "--salt", SALT)
    verify(run, tmp_path, Expect(3, named=[("", "nothing convertible found")]), None)


# ------------------------------------------------------------------------------ resume and runs


def _converted(tmp_path, reference, *extra):
    setup(tmp_path, reference)
    return cli("convert", tmp_path / "in", tmp_path / "out", *ARGS, *extra)


@pytest.mark.parametrize("existing", ["empty", "cut", "foreign", "folder"])
def test_resume_redoes_an_incomplete_or_foreign_output(existing, tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    target = out / reference.name
    if existing == "empty":
        target.write_bytes(b"")
    elif existing == "cut":
        target.write_bytes(reference.data[: len(reference.data) // 2])
    elif existing == "foreign":
        import h5py

        with h5py.File(target, "w") as handle:
            handle["kspace"] = np.zeros((8, 32, 32), np.complex64)
    else:
        target.mkdir()
    run = _converted(tmp_path, reference)
    if existing == "folder":
        expect = Expect(1, named=[(target, "cannot write")], notes=["is not a regular file: converted again"], valid=False)
        target.rmdir()
    else:
        expect = Expect(0, notes=[f"the existing {reference.name} .*: converted again"])
    verify(run, tmp_path, expect, reference)


def test_resume_keeps_a_complete_output(tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    (out / reference.name).write_bytes(reference.data)
    before = (out / reference.name).stat().st_mtime_ns
    run = _converted(tmp_path, reference)
    (line,) = verify(run, tmp_path, Expect(0), reference)
    assert line["status"] == "exists" and (out / reference.name).stat().st_mtime_ns == before


def test_another_runs_live_temporary_is_left_and_a_stale_one_removed(tmp_path, reference):
    """Two runs into one folder: a run removes only its own dead writers' temporaries and ones
    untouched for an hour (a run killed long ago), never one another run is writing."""
    out = tmp_path / "out"
    out.mkdir()
    live = atomic.temporary_for(out / reference.name, run=atomic.new_run())
    stale = atomic.temporary_for(out / reference.name, run=atomic.new_run())
    live.write_bytes(b"being written")
    stale.write_bytes(b"left by a killed run")
    os.utime(stale, (1, 1))
    run = _converted(tmp_path, reference, "--overwrite")
    assert run.exit == 0, run.stderr
    assert live.exists() and not stale.exists()
    live.unlink()
    verify(run, tmp_path, Expect(0), reference)


def test_disk_full_fails_each_volume_and_leaves_nothing_half_written(tmp_path, reference):
    import subprocess

    full = tmp_path / "full"
    full.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("needs root to mount a tiny tmpfs (test_corpus_processes covers RLIMIT_FSIZE)")
    try:
        inputs = setup(tmp_path, reference)
        nifti(inputs / "v.nii")
        run = cli("convert", inputs, full / "out", *ARGS)
        verify(run, tmp_path, Expect(1, named=[(full / "out", "cannot write .*No space left")], valid=False), reference, out=full / "out")
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_a_worker_killed_by_the_oom_killer_costs_its_volume_only(tmp_path, monkeypatch):
    """--workers N: the kernel kills a worker (SIGKILL, as the out-of-memory killer does); the volume
    it held fails alone (each one in flight is retried on its own), the others are written."""
    import multiprocessing
    import signal

    from kspacify import executors, sources

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the fault is planted by patching before the workers fork")
    for name in ("a", "b", "killer", "c", "d"):
        nifti(tmp_path / "in" / f"{name}.nii")
    real = executors.convert_one

    def convert_or_die(item, *args, **kwargs):
        if item.info.files[0].endswith("killer.nii"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(item, *args, **kwargs)

    monkeypatch.setattr(executors, "convert_one", convert_or_die)
    planned = pipeline.plan(sources.discover([str(tmp_path / "in")]), tmp_path / "out", b"s", single_file=False).volumes
    outcomes = list(executors.run(planned, pipeline.ConvertConfig(pipeline.Preprocessing(size=32), phase="zero"), workers=2))
    failed = [o for o in outcomes if o.status == "failed"]
    assert [o.volume.info.files[0].endswith("killer.nii") for o in failed] == [True]
    assert failed[0].reason == executors.WORKER_DIED
    assert sorted(o.status for o in outcomes) == ["failed"] + ["written"] * 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(o.volume.output.name for o in outcomes if o.status == "written")
