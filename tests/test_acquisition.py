"""The Acquisition record: header fields, BIDS sidecars, missing values, and the B0 direction."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from kspacify.acquisition import UNKNOWN, Acquisition, Family, from_header_fields, sequence_family
from kspacify.sources import Pseudonymizer, discover, scan


@pytest.mark.parametrize(
    "scanning, variant, echo, expected",
    [
        ("SE", "SK\\SP", None, (Family.SPIN_ECHO, True)),
        (["SE", "IR"], None, None, (Family.INVERSION_RECOVERY, True)),  # FLAIR
        ("GR\\IR", "SP\\MP", None, (Family.INVERSION_RECOVERY, False)),  # MPRAGE
        ("GR", "SS", None, (Family.GRADIENT_ECHO, False)),
        ("EP", None, None, (Family.EPI, None)),
        ("EP_SE", None, None, (Family.EPI, True)),  # dcm2niix writes the codes joined by "_"
        ("RM", None, None, (Family.UNKNOWN, None)),
        (None, None, "SPIN", (Family.SPIN_ECHO, True)),  # Enhanced MR: EchoPulseSequence
        (None, None, "GRADIENT", (Family.GRADIENT_ECHO, False)),
        (None, None, "BOTH", (Family.UNKNOWN, None)),
        (None, None, None, (Family.UNKNOWN, None)),
    ],
)
def test_sequence_family(scanning, variant, echo, expected):
    assert sequence_family(scanning, variant, None, echo) == expected


def test_header_fields_and_sidecar_units_and_missing_values():
    dicom = from_header_fields({"MagneticFieldStrength": "3", "EchoTime": "12.5", "RepetitionTime": 2000, "FlipAngle": "15",
                                "ScanningSequence": "GR"})  # fmt: skip
    assert dicom == Acquisition(3.0, 12.5, 2000.0, None, 15.0, Family.GRADIENT_ECHO, False, None)
    bids = from_header_fields({"MagneticFieldStrength": 1.5, "EchoTime": 0.0125, "InversionTime": 0.9, "ScanningSequence": "SE_IR"},
                              seconds=True)  # fmt: skip
    assert bids.echo_time_ms == pytest.approx(12.5) and bids.inversion_time_ms == pytest.approx(900.0)
    assert bids.family is Family.INVERSION_RECOVERY and bids.refocused is True
    junk = from_header_fields({"MagneticFieldStrength": "n/a", "EchoTime": -3, "FlipAngle": float("nan")})
    assert junk == UNKNOWN and not junk.known
    assert Acquisition.from_json(bids.to_json()) == bids and Acquisition.from_json(None) == UNKNOWN
    assert Acquisition.from_json({"family": "nonsense", "b0_direction": [0, 0, 0]}) == UNKNOWN


def test_nifti_reads_a_dcm2niix_sidecar_and_the_orientation(tmp_path):
    data = np.random.default_rng(0).uniform(0, 100, (8, 8, 4)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    nib.save(image, tmp_path / "t2.nii.gz")
    nib.save(nib.Nifti1Image(data, None), tmp_path / "plain.nii.gz")  # no sidecar, no orientation code
    (tmp_path / "t2.json").write_text(json.dumps({"MagneticFieldStrength": 3, "EchoTime": 0.1, "ScanningSequence": "SE",
                                                  "PatientName": "DOE^JANE"}))  # fmt: skip
    (tmp_path / "broken.json").write_text("{not json")
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "broken.nii.gz")
    infos = {i.name: i for i in scan(discover([str(tmp_path)]), Pseudonymizer(b"s"), keep_names=True) if hasattr(i, "acquisition")}
    t2 = infos["t2"].acquisition
    assert t2.family is Family.SPIN_ECHO and t2.refocused and t2.field_strength_t == 3.0 and t2.echo_time_ms == pytest.approx(100)
    assert t2.b0_direction == pytest.approx((0.0, 0.0, 1.0))  # axial: B0 along the slice normal
    assert infos["plain"].acquisition == UNKNOWN
    assert infos["broken"].acquisition == Acquisition(b0_direction=(0.0, 0.0, 1.0))  # the affine still orients it
    assert "unreadable" in infos["broken"].meta["sidecar_note"]
    assert "DOE" not in json.dumps(infos["t2"].to_json())
