"""DICOM fills each volume's Acquisition (issue 13): field strength, TE/TR/TI, flip angle, the sequence
family from ScanningSequence, SequenceVariant, ImageType and Enhanced MR's functional groups, and
the B0 direction from the orientation; every field may be unknown. Generated files only."""

from __future__ import annotations

import json
from pathlib import Path

import dicom_factory as F
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from kspacify.acquisition import UNKNOWN, Acquisition, Family
from kspacify.manifest import read_manifest
from kspacify.sources import Pseudonymizer, VolumeInfo, discover, scan

PZ = Pseudonymizer(b"acquisition")
VOLUME = (np.arange(4 * 8 * 8).reshape(4, 8, 8) % 97 + 10).astype(np.uint16)


def volumes(folder: Path) -> list[VolumeInfo]:
    return [v for v in scan(discover([str(folder)]), PZ) if isinstance(v, VolumeInfo)]


def only(folder: Path) -> Acquisition:
    (volume,) = volumes(folder)
    return volume.acquisition


def edit_all(folder: Path, **values) -> None:
    """Set (or, with None, delete) elements in every file of `folder`."""
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        for keyword, value in values.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)


# (manufacturer, ScanningSequence, SequenceVariant, ImageType) as each vendor writes them
CLASSIC = {
    "siemens_tse": ("SIEMENS", "SE", "SK\\SP\\OSP", ("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"), Family.SPIN_ECHO, True),
    "siemens_flash": ("SIEMENS", "GR", "SP", ("ORIGINAL", "PRIMARY", "M", "ND"), Family.GRADIENT_ECHO, False),
    "siemens_bold_epi": ("SIEMENS", "EP", "SK\\SS", ("ORIGINAL", "PRIMARY", "M", "ND"), Family.EPI, False),
    "siemens_dwi_epi": ("SIEMENS", "EP", "SK\\SP", ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"), Family.EPI, None),
    "siemens_mprage": ("SIEMENS", "GR\\IR", "SK\\SP\\MP", ("ORIGINAL", "PRIMARY", "M", "ND"), Family.INVERSION_RECOVERY, False),
    "siemens_flair": ("SIEMENS", "SE\\IR", "SK\\SP\\MP", ("ORIGINAL", "PRIMARY", "M", "ND"), Family.INVERSION_RECOVERY, True),
    "ge_fse": ("GE MEDICAL SYSTEMS", "SE", "SK\\OSP", ("ORIGINAL", "PRIMARY", "OTHER"), Family.SPIN_ECHO, True),
    "ge_gre_epi": ("GE MEDICAL SYSTEMS", "EP\\GR", "SS", ("ORIGINAL", "PRIMARY", "EPI"), Family.EPI, False),
    "ge_research_fiesta": ("GE MEDICAL SYSTEMS", "RM", "SS", ("ORIGINAL", "PRIMARY", "OTHER"), Family.GRADIENT_ECHO, False),
    "ge_research_unknown": ("GE MEDICAL SYSTEMS", "RM", "NONE", ("ORIGINAL", "PRIMARY", "OTHER"), Family.UNKNOWN, None),
    "philips_ffe": ("Philips Medical Systems", "GR", "SK", ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"), Family.GRADIENT_ECHO, False),
    "philips_se": ("Philips Medical Systems", "SE", "SK", ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"), Family.SPIN_ECHO, True),
    "philips_ir": ("Philips Medical Systems", "IR", "SK", ("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"), Family.INVERSION_RECOVERY, None),
    "philips_image_type_only": ("Philips Medical Systems", None, None, ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"),
                                Family.GRADIENT_ECHO, False),
}


@pytest.mark.parametrize("name", list(CLASSIC))
def test_classic_mr_sequence_family_as_each_vendor_spells_it(name, tmp_path):
    manufacturer, scanning, variant, image_type, family, refocused = CLASSIC[name]
    F.write_series(tmp_path / "s", VOLUME, manufacturer=manufacturer, image_type=image_type, echo_time=4.2,
                   repetition_time=25.0, flip_angle=12.0, field_strength=2.89362,
                   extra={"InversionTime": 900.0} if "IR" in (scanning or "") else None)
    edit_all(tmp_path / "s", ScanningSequence=scanning, SequenceVariant=variant)
    acquisition = only(tmp_path / "s")
    assert (acquisition.family, acquisition.refocused) == (family, refocused)
    assert acquisition.field_strength_t == pytest.approx(2.89362)
    assert (acquisition.echo_time_ms, acquisition.repetition_time_ms, acquisition.flip_angle_deg) == (4.2, 25.0, 12.0)
    assert acquisition.inversion_time_ms == (900.0 if "IR" in (scanning or "") else None)
    assert acquisition.b0_direction == pytest.approx((0.0, 0.0, 1.0))  # axial: the field along the slice normal


def test_field_strength_in_gauss_reads_as_tesla(tmp_path):
    F.write_series(tmp_path / "s", VOLUME, manufacturer="GE MEDICAL SYSTEMS", field_strength=15000)
    assert only(tmp_path / "s").field_strength_t == pytest.approx(1.5)


@pytest.mark.parametrize("orientation, b0", [
    ("axial", (0.0, 0.0, 1.0)),
    ("coronal", (0.0, -1.0, 0.0)),  # rows run superior to inferior: the field points up the rows
    ("sagittal", (0.0, -1.0, 0.0)),
    ((1.0, 0.0, 0.0, 0.0, 0.8, -0.6), (0.0, -0.6, 0.8)),  # an oblique axial, tilted 37 degrees
])
def test_b0_direction_follows_the_orientation(orientation, b0, tmp_path):
    F.write_series(tmp_path / "s", VOLUME, orientation=orientation)
    assert only(tmp_path / "s").b0_direction == pytest.approx(b0, abs=1e-6)


def test_missing_values_are_all_unknown(tmp_path):
    F.write_series(tmp_path / "s", VOLUME, echo_time=None, repetition_time=None, flip_angle=None, field_strength=None)
    edit_all(tmp_path / "s", ScanningSequence=None, SequenceVariant=None, ImageOrientationPatient=None)
    (volume,) = volumes(tmp_path / "s")
    assert volume.acquisition == UNKNOWN
    assert volume.meta["slice_order"] == "instance_number"


def test_junk_values_are_unknown_not_errors(tmp_path):
    F.write_series(tmp_path / "s", VOLUME, echo_time=-5.0, flip_angle=0.0)
    edit_all(tmp_path / "s", ScanningSequence="XX\\YY", MagneticFieldStrength="0")
    acquisition = only(tmp_path / "s")
    assert (acquisition.echo_time_ms, acquisition.flip_angle_deg, acquisition.field_strength_t) == (None, None, None)
    assert acquisition.family is Family.UNKNOWN and acquisition.repetition_time_ms == 500.0


def _item(**elements) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _enhanced(path: Path, echo_pulse: str | None, echo_planar: str | None = None, inversion: bool = False,
              echo_times=(7.5, 7.5)) -> Path:  # fmt: skip
    F.write_enhanced_mr(path, VOLUME[:2], positions=[(0, 0, 0), (0, 2, 0)], echo_times=list(echo_times),
                        iop="coronal")
    ds = pydicom.dcmread(path)
    for keyword, value in (("EchoPulseSequence", echo_pulse), ("EchoPlanarPulseSequence", echo_planar)):
        if value is not None:
            setattr(ds, keyword, value)
    if inversion:
        ds.SharedFunctionalGroupsSequence[0].MRModifierSequence = DicomSequence(
            [_item(InversionRecovery="YES", InversionTimes=[2500.0])])
    ds.save_as(path)
    return path


@pytest.mark.parametrize("echo_pulse, echo_planar, inversion, family, refocused", [
    ("SPIN", None, False, Family.SPIN_ECHO, True),
    ("GRADIENT", "NO", False, Family.GRADIENT_ECHO, False),
    ("GRADIENT", "YES", False, Family.EPI, False),
    ("SPIN", "NO", True, Family.INVERSION_RECOVERY, True),
    ("BOTH", None, False, Family.UNKNOWN, None),
    (None, None, False, Family.UNKNOWN, None),
])
def test_enhanced_mr_from_its_functional_groups(echo_pulse, echo_planar, inversion, family, refocused, tmp_path):
    _enhanced(tmp_path / "e" / "enhanced.dcm", echo_pulse, echo_planar, inversion)
    acquisition = only(tmp_path / "e")
    assert (acquisition.family, acquisition.refocused) == (family, refocused)
    assert acquisition.echo_time_ms == 7.5  # MR Echo: EffectiveEchoTime
    assert (acquisition.repetition_time_ms, acquisition.flip_angle_deg) == (800.0, 15.0)  # MR Timing And Related
    assert acquisition.field_strength_t == 1.5  # MagneticFieldStrength, top level
    assert acquisition.inversion_time_ms == (2500.0 if inversion else None)  # MR Modifier: InversionTimes
    assert acquisition.b0_direction == pytest.approx((0.0, -1.0, 0.0))


def test_enhanced_mr_echoes_are_volumes_of_one_echo_time_each(tmp_path):
    _enhanced(tmp_path / "e" / "enhanced.dcm", "GRADIENT", echo_times=(5.0, 10.0))
    found = volumes(tmp_path / "e")
    assert sorted(v.acquisition.echo_time_ms for v in found) == [5.0, 10.0]
    assert all(v.acquisition.family is Family.GRADIENT_ECHO for v in found)


def test_a_manifest_round_trips_the_acquisition(tmp_path):
    from corpus import cli

    F.write_series(tmp_path / "s", VOLUME, orientation="coronal", manufacturer="SIEMENS", echo_time=3.1)
    edit_all(tmp_path / "s", ScanningSequence="GR", SequenceVariant="SP")
    run = cli("scan", tmp_path / "s", "--salt", "x")
    assert run.exit == 0, run.stderr
    (tmp_path / "manifest.jsonl").write_text(run.stdout)
    (entry,) = read_manifest(tmp_path / "manifest.jsonl")
    (scanned,) = volumes(tmp_path / "s")
    assert entry.info.acquisition == scanned.acquisition != UNKNOWN
    assert entry.info.acquisition.family is Family.GRADIENT_ECHO and entry.info.acquisition.echo_time_ms == 3.1
    record = json.loads(run.stdout)["volume"]["acquisition"]
    assert record["family"] == "gradient_echo" and record["b0_direction"] == pytest.approx([0.0, -1.0, 0.0])
    for secret in F.PHI_VALUES + (F.UID_ROOT,):
        assert secret not in json.dumps(record)
