"""Rebuild the example data shipped in examples/ (run once; the output is committed).

Source: the ICBM 2009a symmetric T1 template (MNI152NLin2009aSym, 1 mm) that ships inside nilearn's
wheel. We take 24 axial slices (every 5th from z=-40 mm up) and write them two ways:
  examples/data/dicom/mni152_t1/  a classic MR Image Storage series, one file per slice, shuffled names
  examples/data/nifti/mni152_t1_sagittal.nii.gz  12 sagittal slices of the same template, to show NIfTI input
The DICOM headers carry a fake, obviously-not-real patient so the de-identification can be seen.

Usage:  pip download --no-deps nilearn -d /tmp/nl && python examples/make_examples.py /tmp/nl/nilearn-*.whl
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
HERE = Path(__file__).resolve().parent


def load_template(wheel: Path) -> nib.Nifti1Image:
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(MEMBER)
    tmp = HERE / ".template.nii.gz"
    tmp.write_bytes(data)
    image = nib.load(tmp)
    image = nib.Nifti1Image(np.asarray(image.dataobj), image.affine)
    tmp.unlink()
    return image


def write_dicom_series(image: nib.Nifti1Image, out: Path) -> None:
    """Axial slices as LPS DICOM: rows run anterior->posterior, columns right->left."""
    data = np.asarray(image.dataobj).astype(np.float32)  # (x: R->... , y, z) in RAS voxel order
    affine = image.affine
    out.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    z_indices = list(range(32, 32 + 24 * 5, 5))
    rng = np.random.default_rng(7)
    names = rng.permutation(len(z_indices))
    for number, k in enumerate(z_indices, start=1):
        # voxel (i, j) -> RAS x = i + x0 (left->right?), y = j + y0; DICOM wants columns +L (= -x RAS)
        # and rows +P (= -y RAS): flip both in-plane axes and put y on rows.
        axial = data[:, :, k].T[::-1, ::-1]  # rows: y descending (anterior first), cols: x descending (right... )
        pixels = np.clip(axial, 0, None).astype(np.uint16)
        ras_corner = affine @ np.array([data.shape[0] - 1, data.shape[1] - 1, k, 1.0])
        lps_corner = ras_corner[:3] * np.array([-1, -1, 1])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(out / f"IM{names[number - 1]:04d}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientName = "EXAMPLE^TEMPLATE"
        ds.PatientID = "MNI152-EXAMPLE"
        ds.PatientBirthDate = "19000101"
        ds.StudyDate = "20090101"
        ds.InstitutionName = "Example Institution"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber = 3
        ds.InstanceNumber = number
        ds.SeriesDescription = "T1 template (MNI152 2009a)"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.MagneticFieldStrength = 3.0
        ds.EchoTime = 2.5
        ds.RepetitionTime = 2300
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in lps_corner]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.SpacingBetweenSlices = 5.0
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.tobytes()
        ds.save_as(ds.filename, enforce_file_format=True)


def write_nifti(image: nib.Nifti1Image, out: Path) -> None:
    """12 sagittal planes, 10 mm apart, with the slice axis third (as dcm2niix writes a sagittal series)."""
    data = np.transpose(np.asarray(image.dataobj)[40:160:10, :, :], (1, 2, 0))  # (y, z, x)
    source = image.affine
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = source[:3, 1], source[:3, 2], 10 * source[:3, 0]
    affine[:3, 3] = (source @ np.array([40, 0, 0, 1.0]))[:3]
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), out)


def main(wheel: str) -> None:
    image = load_template(Path(wheel))
    write_dicom_series(image, HERE / "data" / "dicom" / "mni152_t1")
    write_nifti(image, HERE / "data" / "nifti" / "mni152_t1_sagittal.nii.gz")


if __name__ == "__main__":
    main(sys.argv[1])
