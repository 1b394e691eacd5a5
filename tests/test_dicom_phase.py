"""Acquired phase (issue 13): phase images paired with the magnitudes of the same acquisition, their
values read as each vendor stores them, `convert --phase acquired` writing them, `auto` taking them,
and `kspacify.datasets` reading the result back for training. Generated series only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dicom_factory as F
import h5py
import numpy as np
import pydicom
import pytest
from corpus import cli

from kspacify import datasets
from kspacify.kspace import ifft2c
from kspacify.preprocess import Prepared, Preprocessing
from kspacify.sources import Pseudonymizer, Skipped, VolumeInfo, discover, load, scan
from kspacify.sources.dicom.header import header_of
from kspacify.sources.dicom.phase import unit_rule

PZ = Pseudonymizer(b"phase")
SLICES, N = 4, 16
YY, XX = np.mgrid[:N, :N]
MAGNITUDE = np.stack([(300 + 20 * z + 10 * np.cos(XX / 3.0) * np.sin(YY / 4.0)) for z in range(SLICES)]).astype(np.uint16)
# a ramp that wraps several times, so the values cover the whole circle (as noise outside an object does)
PHASE = np.angle(np.exp(1j * np.stack([1.1 * (XX - 7.3) + 0.6 * (YY - 5.1) + 0.4 * z for z in range(SLICES)])))
ARGS = ("--size", str(N), "--salt", "phase")


def wrapped(a: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * a))


def phase_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(wrapped(a - b))))


# vendor conventions: (stored values from radians, mr_dataset keywords, private elements)
def _siemens_12bit(phase):  # 0..4095, slope 2, intercept -4096: -4096..4094 is -pi..pi
    return np.round((phase / math.pi * 4096 + 4096) / 2).clip(0, 4095).astype(np.uint16), \
        dict(rescale_slope=2, rescale_intercept=-4096, extra={"BitsStored": 12, "HighBit": 11})


def _siemens_signed(phase):  # -4096..4095 stored signed
    return np.round(phase / math.pi * 4096).clip(-4096, 4095).astype(np.int16), {}


def _siemens_unsigned(phase):  # 0..4095 without a rescale: 2048 is 0
    return np.round(phase / math.pi * 2048 + 2048).clip(0, 4095).astype(np.uint16), \
        dict(extra={"BitsStored": 12, "HighBit": 11})


def _philips_mrad(phase):  # rescale to -3142..3142, RescaleType mrad
    slope = 2000 * math.pi / 4095
    stored = np.round((phase * 1000 + 1000 * math.pi) / slope).clip(0, 4095).astype(np.uint16)
    return stored, dict(rescale_slope=slope, rescale_intercept=-1000 * math.pi, extra={"BitsStored": 12, "HighBit": 11})


def _philips_scale_slope(phase):  # the same rescale, no RescaleType, with the private ScaleSlope
    stored, kwargs = _philips_mrad(phase)
    return stored, {**kwargs, "private": ((0x2005, "Philips MR Imaging DD 001", 0x0E, "FL", 1000 / kwargs["rescale_slope"]),)}


def _philips_radians(phase):
    slope = 2 * math.pi / 4095
    return np.round((phase + math.pi) / slope).clip(0, 4095).astype(np.uint16), \
        dict(rescale_slope=slope, rescale_intercept=-math.pi, extra={"BitsStored": 12, "HighBit": 11})


def _philips_degrees(phase):
    slope = 360 / 4095
    return np.round((np.degrees(phase) + 180) / slope).clip(0, 4095).astype(np.uint16), \
        dict(rescale_slope=slope, rescale_intercept=-180, extra={"BitsStored": 12, "HighBit": 11})


def _ge_milliradians(phase):  # signed 16-bit milliradians, no rescale: decided from the values
    return np.round(phase * 1000).astype(np.int16), {"private": ((0x0043, "GEMS_PARM_01", 0x2F, "SS", 1),)}


VENDORS = {
    "siemens_12bit": ("SIEMENS", _siemens_12bit, "Siemens -4096..4095", "series"),
    "siemens_signed": ("SIEMENS", _siemens_signed, "from the values, Siemens", "series"),  # 16 bits stored: the values say
    "siemens_unsigned": ("SIEMENS", _siemens_unsigned, "Siemens 0..4095", "series"),
    "philips_mrad": ("Philips Medical Systems", _philips_mrad, "milliradians", "same"),
    "philips_scale_slope": ("Philips Medical Systems", _philips_scale_slope, "Philips precise value, radians", "same"),
    "philips_radians": ("Philips Medical Systems", _philips_radians, "radians", "same"),
    "philips_degrees": ("Philips Medical Systems", _philips_degrees, "degrees", "same"),
    "ge_milliradians": ("GE MEDICAL SYSTEMS", _ge_milliradians, "from the values", "same"),
}
PHASE_TYPE = {"SIEMENS": ("ORIGINAL", "PRIMARY", "P", "ND"), "Philips Medical Systems": ("ORIGINAL", "PRIMARY", "P_FFE", "P", "FFE"),
              "GE MEDICAL SYSTEMS": ("ORIGINAL", "PRIMARY", "OTHER")}  # fmt: skip


def _with_private(ds, private):
    for group, creator, element, vr, value in private:
        ds.private_block(group, creator, create=True).add_new(element, vr, value)


def write_pair(folder: Path, vendor: str, *, phase: np.ndarray = PHASE, phase_spacing=(2.0, 1.0, 1.0),
               phase_study: str | None = None, rescale_type: str | None = None, echo_time: float = 10.0,
               magnitude: bool = True, phase_series: int = 2) -> tuple[list[Path], list[Path]]:  # fmt: skip
    """A magnitude series and its phase images, as `vendor` stores them (beside or in the series)."""
    manufacturer, encode, _, layout = VENDORS[vendor]
    study, frame = F.new_uid(), F.new_uid()
    series = F.new_uid()
    common = dict(manufacturer=manufacturer, study_uid=study, frame_of_reference_uid=frame, echo_time=echo_time,
                  shuffle=False)
    mags = F.write_series(folder, MAGNITUDE, series_uid=series, prefix="M", series_number=1,
                          image_type=("ORIGINAL", "PRIMARY", "M", "ND"), **common) if magnitude else []
    stored, kwargs = encode(phase)
    private = kwargs.pop("private", ())
    extra = dict(kwargs.pop("extra", {}))
    if rescale_type:
        extra["RescaleType"] = rescale_type
    phases = F.write_series(folder, stored, series_uid=series if layout == "same" else F.new_uid(), prefix="P",
                            series_number=1 if layout == "same" else phase_series, spacing=phase_spacing,
                            image_type=PHASE_TYPE[manufacturer], extra=extra or None,
                            **{**common, "study_uid": phase_study or study}, **kwargs)  # fmt: skip
    if private:
        for path in phases:
            ds = pydicom.dcmread(path)
            _with_private(ds, private)
            ds.save_as(path)
    return mags, phases


def scanned(folder: Path, **kwargs) -> tuple[list[VolumeInfo], list[Skipped]]:
    items = list(scan(discover([str(folder)]), PZ, **kwargs))
    return [i for i in items if isinstance(i, VolumeInfo)], [i for i in items if isinstance(i, Skipped)]


def written_phase(path: Path) -> np.ndarray:
    with h5py.File(path) as handle:
        return np.angle(ifft2c(handle["kspace"][()]))


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_each_vendors_phase_is_paired_read_in_radians_and_written(vendor, tmp_path):
    write_pair(tmp_path / "in", vendor, rescale_type="mrad" if vendor == "philips_mrad" else None)
    (info,), skips = scanned(tmp_path / "in")
    assert not skips and info.phase is not None and info.phase.unit == VENDORS[vendor][2]
    assert len(info.phase.slices) == SLICES and all(Path(ref.path).name.startswith("P") for ref in info.phase.slices)
    volume = load(info, with_phase=True)
    assert volume.phase.shape == volume.data.shape and volume.phase.dtype == np.float32
    assert volume.phase.min() >= -np.pi and volume.phase.max() < np.pi
    assert phase_error(volume.phase, PHASE) < 2e-3  # the vendors' quantization: 12 bits over 2 pi
    run = cli("convert", tmp_path / "in", tmp_path / "out", "--phase", "acquired", *ARGS)
    assert run.exit == 0, run.stderr
    (record,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["phase"] == "acquired"
    assert phase_error(written_phase(Path(record["output"])), PHASE) < 2e-3
    with h5py.File(record["output"]) as handle:
        assert handle.attrs["phase_method"] == "acquired" and handle.attrs["phase_source"] == "acquired"
        assert handle.attrs["acquisition"] == "axial_acquired_phase"
        assert json.loads(handle.attrs["acquired_phase"])["unit"] == VENDORS[vendor][2]


def test_the_header_rules(tmp_path):
    """Each vendor rule as `unit_rule` reads it from one header (the docstring of sources/dicom/phase.py)."""
    for vendor, (_, _, unit, _) in VENDORS.items():
        _, phases = write_pair(tmp_path / vendor, vendor, magnitude=False)
        assert unit_rule(header_of(phases[0])).unit == unit, vendor
    _, phases = write_pair(tmp_path / "named", "ge_milliradians", magnitude=False, rescale_type="MRAD")
    assert unit_rule(header_of(phases[0])).unit == "milliradians"  # RescaleType says it first


def test_phase_in_units_nobody_uses_is_refused_with_its_range(tmp_path):
    """GE-style 16-bit values spanning -500..500: neither radians, degrees nor milliradians over -pi..pi."""
    write_pair(tmp_path / "in", "ge_milliradians", phase=(PHASE + np.pi) / (2 * np.pi) * 1.0 - 0.5)
    (info,), _ = scanned(tmp_path / "in")
    assert info.phase is not None and info.phase.scale is None
    run = cli("convert", tmp_path / "in", tmp_path / "out", "--phase", "acquired", *ARGS)
    assert run.exit == 1 and "phase values span" in run.stderr and "not interpreted" in run.stderr
    assert len([line for line in run.stderr.splitlines() if "failed:" in line]) == 1
    run = cli("convert", tmp_path / "in", tmp_path / "auto", *ARGS)  # auto: synthesized instead, and said
    assert run.exit == 0, run.stderr
    assert "note:" in run.stderr and "acquired phase not used (phase values span" in run.stderr
    (record,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["phase"] != "acquired" and any("acquired phase not used" in n for n in record["notes"])


def test_auto_takes_the_acquired_phase_and_says_so(tmp_path):
    write_pair(tmp_path / "in", "siemens_12bit")
    F.write_series(tmp_path / "in" / "other", MAGNITUDE, series_number=7)  # a magnitude without phase
    run = cli("convert", tmp_path / "in", tmp_path / "out", *ARGS)
    assert run.exit == 0, run.stderr
    assert "with acquired phase -> acquired" in run.stderr
    records = sorted((json.loads(line) for line in run.stdout.splitlines()), key=lambda r: r["output"])
    # the magnitude-only series gets what auto picks for its family (the bundled cards decide: sbdm for
    # these spin echoes since the preconditioned checkpoint, physics before), never acquired phase
    assert records[0]["phase"] == "acquired" and records[1]["phase"] in ("sbdm", "physics")
    assert phase_error(written_phase(Path(records[0]["output"])), PHASE) < 2e-3
    methods = cli("methods")
    assert "acquired" in methods.stdout and "most realistic" in methods.stdout


def test_phase_acquired_fails_a_volume_without_phase_in_one_line(tmp_path):
    write_pair(tmp_path / "in", "philips_radians")
    F.write_series(tmp_path / "in" / "other", MAGNITUDE, series_number=7)
    run = cli("convert", tmp_path / "in", tmp_path / "out", "--phase", "acquired", *ARGS)
    assert run.exit == 1
    failed = [line for line in run.stderr.splitlines() if "failed:" in line]
    assert len(failed) == 1 and str(tmp_path / "in" / "other") in failed[0] and "no acquired phase" in failed[0]
    assert len(run.stdout.splitlines()) == 1  # the paired volume is written


def test_mismatched_geometry_is_one_note_and_the_magnitude_converts(tmp_path):
    mags, phases = write_pair(tmp_path / "in", "siemens_12bit", phase_spacing=(2.0, 0.9, 0.9))
    (info,), skips = scanned(tmp_path / "in")
    assert info.phase is None
    (text,) = info.meta["notes"]
    assert text.startswith("not paired with the phase images of series 2: pixel spacing 0.9 x 0.9 mm against 1 x 1 mm")
    assert {s.path for s in skips} == {str(p) for p in phases} and all("not paired" in s.reason for s in skips)
    run = cli("convert", tmp_path / "in", tmp_path / "out", *ARGS)
    assert run.exit == 0, run.stderr
    notes = [line for line in run.stderr.splitlines() if "not paired" in line and line.startswith("kspacify: note: ")]
    assert len(notes) == 1
    assert json.loads(run.stdout)["phase"] != "acquired"


def test_a_phase_series_of_another_study_is_not_paired(tmp_path):
    _, phases = write_pair(tmp_path / "in", "siemens_12bit", phase_study=F.new_uid())
    (info,), skips = scanned(tmp_path / "in")
    assert info.phase is None and "notes" not in info.meta
    assert {s.path for s in skips} == {str(p) for p in phases}
    assert all("without a magnitude of the same acquisition" in s.reason and not s.failed for s in skips)


def test_each_echo_pairs_with_its_own_phase(tmp_path):
    for echo, te in ((1, 5.0), (2, 12.0)):
        write_pair(tmp_path / f"e{echo}", "ge_milliradians", phase=wrapped(PHASE * echo), echo_time=te)
    # one series, two echoes: rewrite the second folder's files into the first one's series
    first = pydicom.dcmread(next((tmp_path / "e1").iterdir()))
    for path in (tmp_path / "e2").iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.StudyInstanceUID = first.SeriesInstanceUID, first.StudyInstanceUID
        ds.FrameOfReferenceUID, ds.EchoNumbers = first.FrameOfReferenceUID, 2
        ds.save_as(path)
    vols, skips = scanned(tmp_path)
    assert not skips and len(vols) == 2
    for info in vols:
        echo = 1 if info.acquisition.echo_time_ms == 5.0 else 2
        assert phase_error(load(info, with_phase=True).phase, wrapped(PHASE * echo)) < 2e-3


def test_enhanced_mr_magnitude_and_phase_frames_of_one_file(tmp_path):
    positions = [(0.0, 0.0, 2.0 * z) for z in range(SLICES)]
    stored, _ = _philips_degrees(PHASE)
    frames = np.concatenate([MAGNITUDE, stored])
    slope = 360 / 4095
    path = F.write_enhanced_mr(tmp_path / "enh.dcm", frames, positions=positions * 2,
                               rescale=[(1.0, 0.0)] * SLICES + [(slope, -180.0)] * SLICES,
                               complex_components=["MAGNITUDE"] * SLICES + ["PHASE"] * SLICES)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 12, 11  # (so the phase frames' rescale maps 0..4095 to -180..180)
    ds.save_as(path)
    (info,), skips = scanned(tmp_path)
    assert not skips and info.phase is not None and info.phase.unit == "degrees"
    assert [ref.frame for ref in info.phase.slices] == [SLICES + z for z in range(SLICES)]
    assert phase_error(load(info, with_phase=True).phase, PHASE) < 2e-3
    assert str(path) in info.files


def test_keep_components_still_writes_the_phase_volume(tmp_path):
    write_pair(tmp_path / "in", "siemens_12bit")
    vols, skips = scanned(tmp_path / "in", keep_components=True)
    assert not skips and sorted(v.meta.get("complex_component", "magnitude") for v in vols) == ["magnitude", "phase"]
    assert next(v for v in vols if "complex_component" not in v.meta).phase is not None


def test_a_manifest_carries_the_phase_and_converts_it(tmp_path):
    write_pair(tmp_path / "in", "siemens_12bit")
    run = cli("scan", tmp_path / "in", "--salt", "phase")
    assert run.exit == 0, run.stderr
    record = json.loads(run.stdout)["volume"]
    assert record["phase"]["unit"] == "Siemens -4096..4095" and len(record["phase"]["slices"]) == SLICES
    for secret in F.PHI_VALUES + (F.UID_ROOT,):
        assert secret not in json.dumps({k: v for k, v in record.items() if k != "slices"}).replace(str(tmp_path), "")
    (tmp_path / "manifest.jsonl").write_text(run.stdout)
    run = cli("convert", "--manifest", tmp_path / "manifest.jsonl", tmp_path / "out", "--phase", "acquired", *ARGS)
    assert run.exit == 0, run.stderr
    assert phase_error(written_phase(Path(json.loads(run.stdout)["output"])), PHASE) < 2e-3


def test_resizing_the_phase_is_wrap_safe():
    """Resizing the angle itself would smear a jump from pi to -pi into values near 0; the real and
    imaginary parts resize smoothly."""
    magnitude = np.full((1, 32, 32), 10.0, np.float32)
    phase = np.angle(np.exp(1j * (0.5 * np.arange(32)[None, None, :] * np.ones((1, 32, 1))))).astype(np.float32)
    prepared = Prepared(magnitude, (1.0, 1.0), Preprocessing(size=16), phase=phase)
    out = prepared.phase_slab()
    truth = np.angle(np.exp(1j * 0.5 * (2 * np.arange(16) + 0.5)))[None, None, :]
    assert out.shape == (1, 16, 16) and out.min() >= -np.pi and out.max() < np.pi
    assert phase_error(out[:, 4:-4, 2:-2], truth[..., 2:-2]) < 0.05  # (edges: the image ends there)


def test_training_reads_converted_acquired_phase_back(tmp_path):
    """`train` learns from acquired phase by converting first: the fastMRI files kspacify.datasets reads."""
    write_pair(tmp_path / "in", "philips_mrad", rescale_type="mrad")
    run = cli("convert", tmp_path / "in", tmp_path / "out", "--phase", "acquired", *ARGS)
    assert run.exit == 0, run.stderr
    refs = datasets.list_volumes(tmp_path / "out")
    assert len(refs) == 1
    pairs = datasets.load_pairs(refs, size=N)
    assert pairs.phase.shape == (SLICES, N, N)
    assert phase_error(pairs.phase, PHASE) < 2e-3
    assert refs[0].acquisition.echo_time_ms == 10.0  # the acquisition record travels too
