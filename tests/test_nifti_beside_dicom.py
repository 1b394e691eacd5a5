"""NIfTI files inside DICOM folders are usually conversions of them (dcm2niix writes beside its
input); converting both puts one scan in the data twice, under two patient pseudonyms, so a
split by patient can put it in training and test (issue 16, item 3). Such a NIfTI is skipped,
with the reason, unless asked for."""

from __future__ import annotations

import json
from pathlib import Path

import dicom_factory as F
import nibabel as nib
import numpy as np

from kspacify.convert import plan
from kspacify.sources import NIFTI_BESIDE_DICOM, Pseudonymizer, Skipped, VolumeInfo, discover, scan

PZ = Pseudonymizer(b"nifti")


def nifti(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.ones((6, 6, 3), np.float32), np.eye(4)).to_filename(path)
    return path


def tree(tmp_path: Path) -> dict[str, Path]:
    """study/s1: DICOM with its conversion beside it; study/: dcm2niix's output above the series
    folders (it writes into the folder it was given), and a NIfTI there without a sidecar;
    other/: NIfTI alone (like examples/data/nifti)."""
    F.write_series(tmp_path / "study" / "s1", np.ones((3, 6, 6), np.uint16))
    above = nifti(tmp_path / "study" / "all.nii")
    above.with_suffix(".json").write_text(json.dumps({"ConversionSoftware": "dcm2niix", "SeriesNumber": 1}))
    return {"beside": nifti(tmp_path / "study" / "s1" / "s1.nii.gz"), "above": above,
            "unrelated": nifti(tmp_path / "study" / "atlas.nii.gz"), "alone": nifti(tmp_path / "other" / "t1.nii.gz")}


def results(inputs, **kw):
    items = list(scan(discover([str(i) for i in inputs]), PZ, **kw))
    vols = {Path(v.slices[0].path).name: v for v in items if isinstance(v, VolumeInfo) and v.source_kind == "nifti"}
    skips = {Path(s.path).name: s for s in items if isinstance(s, Skipped)}
    return items, vols, skips


def test_nifti_beside_or_above_dicom_is_skipped_with_its_reason(tmp_path):
    files = tree(tmp_path)
    items, vols, skips = results([tmp_path])
    assert set(vols) == {"t1.nii.gz", "atlas.nii.gz"}  # no dcm2niix sidecar: not taken for a conversion
    assert {"s1.nii.gz", "all.nii"} <= set(skips)
    for name in ("s1.nii.gz", "all.nii"):
        assert skips[name].reason == NIFTI_BESIDE_DICOM and not skips[name].failed
    assert sum(1 for i in items if isinstance(i, VolumeInfo) and i.source_kind == "dicom") == 1
    assert files["alone"].exists()


def test_asked_for_or_named_explicitly_they_are_converted(tmp_path):
    files = tree(tmp_path)
    _, vols, skips = results([tmp_path], nifti_beside_dicom=True)
    assert set(vols) == {"t1.nii.gz", "atlas.nii.gz", "s1.nii.gz", "all.nii"}
    assert set(skips) == {"all.json"}  # the sidecar itself: not a DICOM or NIfTI file
    _, vols, _ = results([files["beside"], tmp_path / "study" / "s1"])  # the user named the file (first)
    assert "s1.nii.gz" in vols


def test_plan_passes_the_choice_on(tmp_path):
    tree(tmp_path)
    found = list(discover([str(tmp_path)]))
    default = plan(iter(found), tmp_path / "out", b"salt", single_file=False)
    asked = plan(iter(found), tmp_path / "out", b"salt", single_file=False, nifti_beside_dicom=True)
    assert len(asked.volumes) == len(default.volumes) + 2
    assert sum(s.reason == NIFTI_BESIDE_DICOM for s in default.skipped) == 2


def test_the_flag_on_the_command_line(tmp_path):
    """`--nifti-beside-dicom` (convert and scan); without it the skip reason names the flag."""
    from corpus import cli

    tree(tmp_path)
    run = cli("scan", tmp_path, "--salt", "x", "-v")
    assert run.exit == 0 and "--nifti-beside-dicom" in run.stderr
    assert len(run.stdout.splitlines()) == 3  # DICOM, atlas, t1
    asked = cli("scan", tmp_path, "--salt", "x", "--nifti-beside-dicom")
    assert asked.exit == 0 and len(asked.stdout.splitlines()) == 5
    converted = cli("convert", tmp_path, tmp_path / "out", "--salt", "x", "--size", "8", "--phase", "zero",
                    "--nifti-beside-dicom")  # fmt: skip
    assert converted.exit == 0, converted.stderr
    assert len(converted.stdout.splitlines()) == 5
    assert "NIfTI file in a folder" not in converted.stderr
